"""Register a miner (or re-register it with the same API key) and issue a fresh session token."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from poolhub.domain.errors import AuthenticationError, DomainError
from poolhub.domain.model import Miner, MinerSpec, Trust
from poolhub.domain.ports import (
    ChangeKind,
    ChangeLog,
    Clock,
    LiveState,
    MinerRepository,
    PresenceRepository,
    SessionRepository,
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
    """`POOLHUB_SECRET_KEY`: keys the HMAC under which API keys are stored."""

    value: str


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
        sessions: SessionRepository,
        presence: PresenceRepository,
        uow: UnitOfWork,
        directory: LiveState,
        clock: Clock,
        tokens: TokenSource,
        secret: ServerSecret,
        changes: ChangeLog,
    ) -> None:
        self._miners = miners
        self._sessions = sessions
        self._presence = presence
        self._uow = uow
        self._directory = directory
        self._clock = clock
        self._tokens = tokens
        self._secret = secret
        self._changes = changes

    async def execute(self, registrations: Sequence[Registration]) -> list[SessionGrant | DomainError]:
        return await self._uow.run(lambda: self._execute(registrations))

    async def _execute(self, registrations: Sequence[Registration]) -> list[SessionGrant | DomainError]:
        ids = [r.spec.miner_id for r in registrations]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch must not register the same miner twice")
        stored_hashes = await self._miners.api_key_hashes(ids)
        missing = [i for i in ids if i in stored_hashes and self._directory.get(i) is None]
        stored = await self._miners.get_many(missing) if missing else {}
        now = self._clock.now()
        lease = self._directory.lease

        outcomes: list[SessionGrant | DomainError] = []
        accepted: list[tuple[Miner, str, str]] = []  # (miner, API-key hash, token hash)
        for registration in registrations:
            spec = registration.spec
            key_hash = hash_api_key(self._secret.value, registration.api_key)
            stored_hash = stored_hashes.get(spec.miner_id)
            if stored_hash is not None and not same_secret(stored_hash, key_hash):
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
            token = self._tokens.new_token()
            accepted.append((miner, key_hash, hash_token(token)))
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

        saved = await self._miners.save_registrations([(miner, key_hash) for miner, key_hash, _ in accepted])
        # A miner another key registered meanwhile (on any process) was not written: refuse it alone.
        for position, outcome in enumerate(outcomes):
            miner_id = registrations[position].spec.miner_id
            if isinstance(outcome, SessionGrant) and miner_id not in saved:
                outcomes[position] = AuthenticationError(
                    f"api_key does not match the one miner '{miner_id}' registered with"
                )
        accepted = [item for item in accepted if item[0].miner_id in saved]
        if not accepted:
            await self._uow.rollback()
            return outcomes
        # Every earlier token of these miners ends here (a first registration has none), so a miner
        # registered concurrently under the same key still ends with exactly one live token.
        revoked = await self._sessions.revoke_all_of(sorted(saved), now)
        await self._sessions.create_many(
            [
                (token_hash, miner.miner_id, now, lease.token_expires_at(miner.status))
                for miner, _, token_hash in accepted
            ]
        )
        await self._presence.record(
            [(m.miner_id, m.status.online_since or now, lease.presence_end(m.status)) for m, _, _ in accepted]
        )
        await self._changes.record(ChangeKind.REGISTERED, [m.miner_id for m, _, _ in accepted], now)
        await self._uow.commit()

        self._directory.forget_tokens(revoked)
        for miner, _, token_hash in accepted:
            self._directory.put(miner, now)
            self._directory.remember_token(token_hash, miner.miner_id)
        return outcomes
