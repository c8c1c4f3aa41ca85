"""Register a miner (or re-register it with the same API key) and issue a fresh session token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from poolhub.domain.directory import MinerDirectory
from poolhub.domain.errors import AuthenticationError
from poolhub.domain.model import Miner, MinerSpec, Trust
from poolhub.domain.ports import (
    Clock,
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


class RegisterMiner:
    """Create or update a miner, revoke its older tokens and issue a new one; commits once.

    Re-registering needs the API key the miner first registered with; otherwise nothing changes.
    A restarting miner comes back with an empty queue; its trust and history are kept.
    """

    def __init__(
        self,
        miners: MinerRepository,
        sessions: SessionRepository,
        presence: PresenceRepository,
        uow: UnitOfWork,
        directory: MinerDirectory,
        clock: Clock,
        tokens: TokenSource,
        secret: ServerSecret,
    ) -> None:
        self._miners = miners
        self._sessions = sessions
        self._presence = presence
        self._uow = uow
        self._directory = directory
        self._clock = clock
        self._tokens = tokens
        self._secret = secret

    async def execute(self, registration: Registration) -> SessionGrant:
        spec = registration.spec
        key_hash = hash_api_key(self._secret.value, registration.api_key)
        stored_hash = await self._miners.api_key_hash(spec.miner_id)
        if stored_hash is not None and not same_secret(stored_hash, key_hash):
            raise AuthenticationError(
                f"api_key does not match the one miner '{spec.miner_id}' registered with"
            )
        now = self._clock.now()
        existing = self._directory.get(spec.miner_id) if stored_hash is not None else None
        if stored_hash is not None and existing is None:
            existing = await self._miners.get(spec.miner_id)
        lease = self._directory.lease
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
        await self._miners.save_registration(miner, key_hash)
        revoked = await self._sessions.revoke_all(spec.miner_id, now)
        token = self._tokens.new_token()
        token_hash = hash_token(token)
        await self._sessions.create(token_hash, spec.miner_id, now, lease.token_expires_at(status))
        assert status.online_since is not None
        await self._presence.record([(spec.miner_id, status.online_since, lease.presence_end(status))])
        await self._uow.commit()

        self._directory.forget_tokens(revoked)
        self._directory.forget_tokens_of(spec.miner_id)
        self._directory.drop_pending(spec.miner_id)
        self._directory.put(miner, now)
        self._directory.remember_token(token_hash, spec.miner_id)
        return SessionGrant(
            created=stored_hash is None,
            session_token=token,
            lease_ttl_sec=lease.heartbeat_grace_sec,
            next_heartbeat_sec=lease.next_heartbeat_sec,
            lease_expires_at=lease.lease_expires_at(status),
        )
