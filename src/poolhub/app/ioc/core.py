"""Process-wide objects (policies, clock, directory, secrets) and persistence (engine, sessions, repos)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NewType

from dishka import AsyncContainer, Provider, Scope, from_context, provide
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from poolhub.adapters.db.engine import (
    ReadEngine,
    make_engine,
    make_read_engine,
    make_read_session_factory,
    make_session_factory,
)
from poolhub.adapters.db.registrations import SqlRegistrationStore
from poolhub.adapters.db.repositories import (
    SqlMinerRepository,
    SqlPresenceRepository,
    SqlSessionRepository,
    SqlTokenLookup,
)
from poolhub.adapters.db.scheduling import SqlTickLock
from poolhub.adapters.db.uow import SqlUnitOfWork
from poolhub.adapters.live import LiveDirectory, SqlChangeLog
from poolhub.adapters.live.feed import NotifyListener, SqlChangeSource
from poolhub.adapters.live.writebehind import SqlLiveStore
from poolhub.adapters.system import SecretsTokenSource, SystemClock
from poolhub.app.http.auth import RoleSecrets
from poolhub.app.metrics import Metrics
from poolhub.app.runtime.background import DatabaseProbe
from poolhub.app.runtime.heap import HeapFreezer
from poolhub.app.runtime.loop_monitor import LoopMonitor
from poolhub.app.runtime.registrations import RegistrationBatcher
from poolhub.app.settings import Settings
from poolhub.domain.model import LeasePolicy
from poolhub.domain.ports import (
    ChangeLog,
    Clock,
    LiveState,
    MinerRepository,
    PresenceRepository,
    RegistrationStore,
    SessionRepository,
    TickLock,
    TokenLookup,
    TokenSource,
    UnitOfWork,
)
from poolhub.domain.trust import TrustPolicy
from poolhub.domain.use_cases.authenticate_miner import AuthenticateMiner, OtherRoleSecrets
from poolhub.domain.use_cases.miner_session import (
    ApplyBeat,
    RecordHeartbeat,
)
from poolhub.domain.use_cases.register_miner import DirectoryLimits, ServerSecret

ReadSession = NewType("ReadSession", AsyncSession)
"""A request's session for work that only reads (on SQLite it never takes the write lock)."""
ReadSessions = NewType("ReadSessions", async_sessionmaker[AsyncSession])


class CoreProvider(Provider):
    """Process-wide objects: policies from settings, the clock, the in-memory directory."""

    settings = from_context(provides=Settings, scope=Scope.APP)

    @provide(scope=Scope.APP)
    def lease(self, settings: Settings) -> LeasePolicy:
        return LeasePolicy(settings.heartbeat_grace_sec, settings.session_ttl_sec)

    @provide(scope=Scope.APP)
    def trust(self, settings: Settings) -> TrustPolicy:
        return TrustPolicy(half_life_hours=settings.trust_half_life_hours)

    @provide(scope=Scope.APP)
    def directory(
        self,
        lease: LeasePolicy,
        trust: TrustPolicy,
        clock: Clock,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        read_sessions: ReadSessions,
        metrics: Metrics,
    ) -> LiveDirectory:
        def dropped(kind: str, count: int) -> None:
            metrics.writebehind_dropped.labels(kind=kind).inc(count)

        return LiveDirectory(
            lease,
            trust,
            clock,
            store=SqlLiveStore(sessions, lease),
            # The feed only reads: on SQLite its polls never take the write lock.
            feed=SqlChangeSource(read_sessions, lease),
            queue_max=settings.writebehind_queue_max,
            on_drop=dropped,
        )

    @provide(scope=Scope.APP)
    def live_state(self, directory: LiveDirectory) -> LiveState:
        return directory

    @provide(scope=Scope.APP)
    def listener(self, settings: Settings, directory: LiveDirectory) -> NotifyListener:
        return NotifyListener(settings.database_url, directory.origin)

    @provide(scope=Scope.APP)
    def secret(self, settings: Settings) -> ServerSecret:
        return ServerSecret(settings.secret_key, settings.secret_key_previous)

    @provide(scope=Scope.APP)
    def directory_limits(self, settings: Settings) -> DirectoryLimits:
        return DirectoryLimits(settings.max_directory_tokens)

    @provide(scope=Scope.APP)
    def other_roles(self, roles: RoleSecrets) -> OtherRoleSecrets:
        return OtherRoleSecrets((roles.operator, roles.coordinator))

    @provide(scope=Scope.APP)
    def registrations(self, container: AsyncContainer) -> RegistrationBatcher:
        return RegistrationBatcher(container)

    @provide(scope=Scope.APP)
    def heap_freezer(self) -> HeapFreezer:
        return HeapFreezer()

    @provide(scope=Scope.APP)
    def role_secrets(self, settings: Settings) -> RoleSecrets:
        return RoleSecrets(coordinator=settings.coordinator_shared_secret, operator=settings.admin_token)

    apply_beat = provide(ApplyBeat, scope=Scope.APP)
    authenticate_miner = provide(AuthenticateMiner, scope=Scope.APP)
    record_heartbeat = provide(RecordHeartbeat, scope=Scope.APP)
    metrics = provide(Metrics, scope=Scope.APP)
    loop_monitor = provide(LoopMonitor, scope=Scope.APP)
    probe = provide(DatabaseProbe, scope=Scope.APP)
    clock = provide(SystemClock, provides=Clock, scope=Scope.APP)
    tokens = provide(SecretsTokenSource, provides=TokenSource, scope=Scope.APP)


class PersistenceProvider(Provider):
    """The engine for the process and one session per request (or per background job)."""

    @provide(scope=Scope.APP)
    async def engine(self, settings: Settings) -> AsyncIterator[AsyncEngine]:
        engine = make_engine(settings.database_url)
        yield engine
        await engine.dispose()

    @provide(scope=Scope.APP)
    async def read_engine(self, settings: Settings, engine: AsyncEngine) -> AsyncIterator[ReadEngine]:
        read_engine = make_read_engine(settings.database_url, engine)
        yield read_engine
        if read_engine is not engine:
            await read_engine.dispose()

    @provide(scope=Scope.APP)
    def session_factory(self, engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        return make_session_factory(engine)

    @provide(scope=Scope.REQUEST)
    async def session(self, factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        # Closing rolls back whatever the use case did not commit; committing is the use case's job.
        async with factory() as session:
            yield session

    @provide(scope=Scope.APP)
    def read_session_factory(self, engine: ReadEngine) -> ReadSessions:
        return ReadSessions(make_read_session_factory(engine))

    @provide(scope=Scope.REQUEST)
    async def read_session(self, factory: ReadSessions) -> AsyncIterator[ReadSession]:
        async with factory() as session:
            yield ReadSession(session)

    @provide(scope=Scope.REQUEST)
    def changes(self, session: AsyncSession, directory: LiveDirectory) -> ChangeLog:
        return SqlChangeLog(session, directory.origin)

    @provide(scope=Scope.REQUEST)
    def miners(self, session: AsyncSession, lease: LeasePolicy) -> MinerRepository:
        return SqlMinerRepository(session, lease)

    @provide(scope=Scope.REQUEST)
    def registration_store(self, session: AsyncSession, lease: LeasePolicy) -> RegistrationStore:
        return SqlRegistrationStore(session, lease)

    sessions = provide(SqlSessionRepository, provides=SessionRepository, scope=Scope.REQUEST)
    presence = provide(SqlPresenceRepository, provides=PresenceRepository, scope=Scope.REQUEST)
    uow = provide(SqlUnitOfWork, provides=UnitOfWork, scope=Scope.REQUEST)
    tick_lock = provide(SqlTickLock, provides=TickLock, scope=Scope.APP)

    @provide(scope=Scope.APP)
    def token_lookup(self, read_sessions: ReadSessions, lease: LeasePolicy) -> TokenLookup:
        # Lookups only read: on SQLite they never queue behind the writers for the write connection.
        return SqlTokenLookup(read_sessions, lease)
