"""What an authenticated miner does with its session: beats, status updates, lease renewal, logout."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from poolhub.domain.model import Miner
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
from poolhub.domain.security import hash_token
from poolhub.domain.use_cases.authenticate_miner import AuthenticatedMiner, AuthenticateMiner


@dataclass(frozen=True, slots=True)
class Beat:
    """A heartbeat's optional telemetry; `None` leaves the previous value."""

    queue_len: int | None = None
    avg_latency_ms: float | None = None
    temp_c: float | None = None
    mem_free_gb: float | None = None
    busy: bool | None = None
    current_jobs: tuple[str, ...] | None = None
    gpu_utilization_pct: float | None = None


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    queue_len: int | None = None
    busy: bool | None = None
    current_jobs: tuple[str, ...] | None = None
    price_token_per_ksec: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RenewedSession:
    session_token: str
    lease_expires_at: datetime


def _changes(**values: object) -> dict[str, object]:
    return {name: value for name, value in values.items() if value is not None}


class ApplyBeat:
    """The in-memory half of a beat, shared by HTTP and WebSocket; process-wide, no database."""

    def __init__(self, directory: LiveState, clock: Clock) -> None:
        self._directory = directory
        self._clock = clock

    def live_miner(self, token_hash: str, miner_id: str) -> Miner | None:
        """The miner, if the token is still its live token (not revoked, not expired)."""
        if self._directory.miner_for_token(token_hash) != miner_id:
            return None
        miner = self._directory.get(miner_id)
        if miner is None or not self._directory.lease.token_is_valid(miner.status, self._clock.now()):
            return None
        return miner

    def apply(self, miner_id: str, beat: Beat) -> datetime:
        updated = self._directory.beat(
            miner_id,
            self._clock.now(),
            **_changes(
                queue_len=beat.queue_len,
                avg_latency_ms=beat.avg_latency_ms,
                temp_c=beat.temp_c,
                mem_free_gb=beat.mem_free_gb,
                busy=beat.busy,
                current_jobs=beat.current_jobs,
                gpu_utilization_pct=beat.gpu_utilization_pct,
            ),
        )
        return self._directory.lease.lease_expires_at(updated.status)


async def return_after_logout(directory: LiveState, auth: AuthenticatedMiner, now: datetime) -> None:
    """A beat with the API key brings a logged-out miner back: the key outlives the logout (its session
    tokens do not). Saved and announced before the answer, since the write-behind never undoes a logout
    (a beat taken with a revoked session token must stay refused)."""
    if auth.by_api_key and auth.miner.status.logged_out_at is not None:
        await directory.bring_back(auth.miner.miner_id, directory.lease.beat(auth.miner.status, now), now)


class RecordHeartbeat:
    """Authenticate (session token or API key) and apply a beat in memory; flushed within a second."""

    def __init__(
        self, authenticate: AuthenticateMiner, apply_beat: ApplyBeat, directory: LiveState, clock: Clock
    ) -> None:
        self._authenticate = authenticate
        self._apply_beat = apply_beat
        self._directory = directory
        self._clock = clock

    async def execute(self, token: str | None, beat: Beat) -> datetime:
        auth = await self._authenticate.execute(token, allow_api_key=True)
        await return_after_logout(self._directory, auth, self._clock.now())
        return self._apply_beat.apply(auth.miner.miner_id, beat)


class UpdateMinerStatus:
    """A beat that also reports load; a price change is saved at once, since matching prices depend on it."""

    def __init__(
        self,
        authenticate: AuthenticateMiner,
        directory: LiveState,
        miners: MinerRepository,
        uow: UnitOfWork,
        clock: Clock,
        changes: ChangeLog,
    ) -> None:
        self._authenticate = authenticate
        self._directory = directory
        self._miners = miners
        self._uow = uow
        self._clock = clock
        self._changes = changes

    async def execute(self, token: str | None, update: StatusUpdate) -> datetime:
        auth = await self._authenticate.execute(token, allow_api_key=True)
        now = self._clock.now()
        await return_after_logout(self._directory, auth, now)
        miner_id = auth.miner.miner_id
        price = update.price_token_per_ksec
        if price is not None and price != auth.miner.spec.price_token_per_ksec:

            async def save() -> None:
                await self._miners.save_price(miner_id, price, now)
                await self._changes.record(ChangeKind.SPEC, [miner_id], now)
                await self._uow.commit()

            await self._uow.run(save)
            current = self._directory.get(miner_id) or auth.miner
            spec = replace(current.spec, price_token_per_ksec=price)
            self._directory.put(replace(current, spec=spec), now)
        updated = self._directory.beat(
            miner_id,
            now,
            **_changes(queue_len=update.queue_len, busy=update.busy, current_jobs=update.current_jobs),
        )
        return self._directory.lease.lease_expires_at(updated.status)


class RenewLease:
    """Issue a new token and revoke the old one (a beat too); commits once."""

    def __init__(
        self,
        authenticate: AuthenticateMiner,
        directory: LiveState,
        sessions: SessionRepository,
        uow: UnitOfWork,
        clock: Clock,
        tokens: TokenSource,
        changes: ChangeLog,
    ) -> None:
        self._authenticate = authenticate
        self._directory = directory
        self._sessions = sessions
        self._uow = uow
        self._clock = clock
        self._tokens = tokens
        self._changes = changes

    async def execute(self, token: str | None) -> RenewedSession:
        auth = await self._authenticate.execute(token)
        miner_id = auth.miner.miner_id
        now = self._clock.now()
        lease = self._directory.lease
        new_token = self._tokens.new_token()
        new_hash = hash_token(new_token)
        status = lease.beat(auth.miner.status, now)

        async def save() -> list[str]:
            revoked = await self._sessions.revoke_all_of([miner_id], now)
            await self._sessions.create_many([(new_hash, miner_id, now, lease.token_expires_at(status))])
            await self._changes.record(ChangeKind.REVOKED, [miner_id], now)
            await self._uow.commit()
            return revoked

        revoked = await self._uow.run(save)
        self._directory.forget_tokens([*revoked, auth.token_hash])
        self._directory.remember_token(new_hash, miner_id)
        updated = self._directory.beat(miner_id, now)
        return RenewedSession(new_token, lease.lease_expires_at(updated.status))


class LogoutMiner:
    """Take the miner offline at once and revoke its tokens; saved before answering."""

    def __init__(
        self,
        authenticate: AuthenticateMiner,
        directory: LiveState,
        miners: MinerRepository,
        sessions: SessionRepository,
        presence: PresenceRepository,
        uow: UnitOfWork,
        clock: Clock,
        changes: ChangeLog,
    ) -> None:
        self._authenticate = authenticate
        self._directory = directory
        self._miners = miners
        self._sessions = sessions
        self._presence = presence
        self._uow = uow
        self._clock = clock
        self._changes = changes

    async def execute(self, token: str | None) -> None:
        auth = await self._authenticate.execute(token)
        miner = auth.miner
        now = self._clock.now()
        status = self._directory.lease.logout(miner.status, now)

        async def save() -> list[str]:
            # Status, then sessions, then presence: the order the beat flusher locks them in.
            await self._miners.save_statuses([(miner.miner_id, status)], now)
            revoked = await self._sessions.revoke_all_of([miner.miner_id], now)
            if status.online_since is not None:
                await self._presence.record([(miner.miner_id, status.online_since, now)])
            await self._changes.record(ChangeKind.LOGOUT, [miner.miner_id], now)
            await self._uow.commit()
            return revoked

        revoked = await self._uow.run(save)
        self._directory.forget_tokens([*revoked, auth.token_hash])
        self._directory.put(replace(miner, status=status), now)
