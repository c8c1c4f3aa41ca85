"""Register a miner (or re-register it with the same API key) and issue a fresh session token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from poolhub.domain.errors import AuthenticationError, DomainError, LimitExceededError
from poolhub.domain.model import Miner, MinerSpec, Trust
from poolhub.domain.ports import (
    ChangeKind,
    ChangeLog,
    Clock,
    LiveState,
    MinerRegistration,
    MinerRepository,
    RegistrationStore,
    TokenSource,
    UnitOfWork,
)
from poolhub.domain.security import hash_api_key, hash_token, same_secret


@dataclass(frozen=True, slots=True)
class Registration:
    spec: MinerSpec
    api_key: str


@dataclass(frozen=True, slots=True)
class SessionGrant:
    created: bool
    session_token: str
    lease_ttl_sec: int
    next_heartbeat_sec: int
    lease_expires_at: datetime


@dataclass(frozen=True, slots=True)
class ServerSecret:
    """`POOLHUB_SECRET_KEY`: keys the HMAC under which API keys are stored.

    `previous` (`POOLHUB_SECRET_KEY_PREVIOUS`) is the key before a rotation: a hash made under it is still
    accepted, and the registration stores the key again under `value`.
    """

    value: str
    previous: str = ""

    def matches(self, stored_hash: str, api_key: str, current_hash: str) -> bool:
        if same_secret(stored_hash, current_hash):
            return True
        return bool(self.previous) and same_secret(stored_hash, hash_api_key(self.previous, api_key))


@dataclass(frozen=True, slots=True)
class DirectoryLimits:
    """`MAX_DIRECTORY_TOKENS`: how many distinct tags plus capabilities the directory may hold."""

    max_tokens: int = 10_000


class RegisterMiners:
    """Register a batch of miners in one transaction: concurrent registrations share one commit.

    Each registration gets its own outcome: a grant, or the DomainError that refused it (an api_key that
    does not match the one the miner first registered with). Re-registering updates the specification,
    revokes the miner's older tokens and issues a new one; a restarting miner comes back with an empty
    queue, its trust and history kept. Miner ids must be distinct within a batch.
    """

    def __init__(
        self,
        miners: MinerRepository,
        store: RegistrationStore,
        uow: UnitOfWork,
        directory: LiveState,
        clock: Clock,
        tokens: TokenSource,
        secret: ServerSecret,
        changes: ChangeLog,
        limits: DirectoryLimits,
    ) -> None:
        self._miners = miners
        self._store = store
        self._uow = uow
        self._directory = directory
        self._clock = clock
        self._tokens = tokens
        self._secret = secret
        self._changes = changes
        self._limits = limits

    async def execute(self, registrations: Sequence[Registration]) -> list[SessionGrant | DomainError]:
        return await self._uow.run(lambda: self._execute(registrations))

    async def _execute(self, registrations: Sequence[Registration]) -> list[SessionGrant | DomainError]:
        ids = [r.spec.miner_id for r in registrations]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch must not register the same miner twice")
        stored_hashes = await self._store.key_hashes(ids)
        missing = [i for i in ids if i in stored_hashes and self._directory.get(i) is None]
        stored = await self._miners.get_many(missing) if missing else {}
        now = self._clock.now()
        lease = self._directory.lease

        outcomes: list[SessionGrant | DomainError] = []
        accepted: list[MinerRegistration] = []
        # Keys stored under the previous secret, to store under the current one (a new miner needs no
        # announcement of its key: a miner new to a directory empties that directory's key cache).
        rekeyed: list[tuple[str, str, str]] = []  # (miner id, stored hash, current hash)
        batch_tags: set[str] = set()
        batch_caps: set[str] = set()
        for registration in registrations:
            spec = registration.spec
            new_tags, new_caps = self._directory.index.new_tokens(spec.tags, spec.capabilities)
            new_tags -= batch_tags
            new_caps -= batch_caps
            held = self._directory.index.token_count() + len(batch_tags) + len(batch_caps)
            if held + len(new_tags) + len(new_caps) > self._limits.max_tokens:
                outcomes.append(
                    LimitExceededError(
                        f"the directory holds {held} distinct tags and capabilities; miner "
                        f"'{spec.miner_id}' would add {len(new_tags) + len(new_caps)} more, past "
                        f"MAX_DIRECTORY_TOKENS={self._limits.max_tokens}: reuse existing tags"
                    )
                )
                continue
            key_hash = hash_api_key(self._secret.value, registration.api_key)
            stored_hash = stored_hashes.get(spec.miner_id)
            if stored_hash is not None and not self._secret.matches(
                stored_hash, registration.api_key, key_hash
            ):
                outcomes.append(
                    AuthenticationError(
                        f"api_key does not match the one miner '{spec.miner_id}' registered with"
                    )
                )
                continue
            existing = None
            if stored_hash is not None:
                existing = self._directory.get(spec.miner_id) or stored.get(spec.miner_id)
            status = lease.beat(
                existing.status if existing is not None else None,
                now,
                queue_len=0,
                busy=False,
                current_jobs=(),
            )
            miner = Miner(
                spec=spec,
                status=status,
                registered_at=existing.registered_at if existing is not None else now,
                trust=existing.trust if existing is not None else Trust(as_of=now),
            )
            if stored_hash is not None and stored_hash != key_hash:
                rekeyed.append((spec.miner_id, stored_hash, key_hash))
            token = self._tokens.new_token()
            batch_tags |= new_tags
            batch_caps |= new_caps
            accepted.append(
                MinerRegistration(
                    miner=miner,
                    api_key_hash=key_hash,
                    token_hash=hash_token(token),
                    token_expires_at=lease.token_expires_at(status),
                    online_since=status.online_since or now,
                    presence_end=lease.presence_end(status),
                )
            )
            outcomes.append(
                SessionGrant(
                    created=stored_hash is None,
                    session_token=token,
                    lease_ttl_sec=lease.heartbeat_grace_sec,
                    next_heartbeat_sec=lease.next_heartbeat_sec,
                    lease_expires_at=lease.lease_expires_at(status),
                )
            )
        if not accepted:
            return outcomes

        # Stored again under the current secret first, so the upsert's "same key hash" condition holds.
        await self._miners.rehash_api_keys(rekeyed)
        # Every earlier token of the miners written ends here (a first registration has none), so a
        # miner registered concurrently under the same key still ends with exactly one live token.
        saved, revoked = await self._store.save(accepted, now)
        # A miner another key registered meanwhile (on any process) was not written: refuse it alone.
        for position, outcome in enumerate(outcomes):
            miner_id = registrations[position].spec.miner_id
            if isinstance(outcome, SessionGrant) and miner_id not in saved:
                outcomes[position] = AuthenticationError(
                    f"api_key does not match the one miner '{miner_id}' registered with"
                )
        accepted = [item for item in accepted if item.miner.miner_id in saved]
        if not accepted:
            await self._uow.rollback()
            return outcomes
        # The feed rows last: on PostgreSQL they take the feed's lock, held until the commit.
        await self._changes.record(ChangeKind.REGISTERED, [r.miner.miner_id for r in accepted], now)
        key_changes = sorted({m for m, _, _ in rekeyed} & saved)
        await self._changes.record(ChangeKind.API_KEY, key_changes, now)
        await self._uow.commit()

        self._directory.forget_tokens(revoked)
        if key_changes:
            self._directory.api_keys_changed()
        for written in accepted:
            self._directory.put(written.miner, now)
            self._directory.remember_token(written.token_hash, written.miner.miner_id)
        return outcomes
