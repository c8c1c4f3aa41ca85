"""Dishka providers grouped by lifetime; `make_container` is the one place that lists them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from dishka import AsyncContainer, Provider, Scope, from_context, make_async_container, provide
from dishka.integrations.litestar import LitestarProvider
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from poolhub.adapters.db.billing_repositories import SqlUsageLedger
from poolhub.adapters.db.engine import make_engine, make_session_factory
from poolhub.adapters.db.repositories import (
    SqlFeedbackRepository,
    SqlMatchRecordRepository,
    SqlMinerRepository,
    SqlPresenceRepository,
    SqlSessionRepository,
    SqlTickLock,
    SqlTokenLookup,
)
from poolhub.adapters.db.uow import SqlUnitOfWork
from poolhub.adapters.system import SecretsTokenSource, SystemClock
from poolhub.app.auth import RoleSecrets
from poolhub.app.background import DatabaseProbe
from poolhub.app.metrics import Metrics
from poolhub.app.providers_billing import BillingProvider
from poolhub.app.providers_sla import SlaProvider
from poolhub.app.registrations import RegistrationBatcher
from poolhub.app.settings import Settings
from poolhub.domain.billing import UnitPrices
from poolhub.domain.directory import MinerDirectory
from poolhub.domain.match_log import MatchLog
from poolhub.domain.matching import ExplorationPolicy
from poolhub.domain.model import LeasePolicy
from poolhub.domain.ports import (
    Clock,
    FeedbackRepository,
    MatchRecordRepository,
    MinerRepository,
    PresenceRepository,
    SessionRepository,
    TickLock,
    TokenLookup,
    TokenSource,
    UnitOfWork,
    UsageLedger,
)
from poolhub.domain.trust import TrustPolicy
from poolhub.domain.use_cases.authenticate_miner import AuthenticateMiner, OtherRoleSecrets
from poolhub.domain.use_cases.list_miners import ListMiners
from poolhub.domain.use_cases.match_job import MatchJob, MatchPolicy
from poolhub.domain.use_cases.miner_session import (
    ApplyBeat,
    LogoutMiner,
    RecordHeartbeat,
    RenewLease,
    UpdateMinerStatus,
)
from poolhub.domain.use_cases.record_feedback import RecordFeedback
from poolhub.domain.use_cases.register_miner import RegisterMiners, ServerSecret


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
    def directory(self, lease: LeasePolicy, trust: TrustPolicy) -> MinerDirectory:
        return MinerDirectory(lease, trust)

    @provide(scope=Scope.APP)
    def secret(self, settings: Settings) -> ServerSecret:
        return ServerSecret(settings.secret_key)

    @provide(scope=Scope.APP)
    def other_roles(self, roles: RoleSecrets) -> OtherRoleSecrets:
        return OtherRoleSecrets((roles.operator, roles.coordinator))

    @provide(scope=Scope.APP)
    def registrations(self, container: AsyncContainer) -> RegistrationBatcher:
        return RegistrationBatcher(container)

    @provide(scope=Scope.APP)
    def role_secrets(self, settings: Settings) -> RoleSecrets:
        return RoleSecrets(coordinator=settings.coordinator_shared_secret, operator=settings.admin_token)

    apply_beat = provide(ApplyBeat, scope=Scope.APP)
    authenticate_miner = provide(AuthenticateMiner, scope=Scope.APP)
    record_heartbeat = provide(RecordHeartbeat, scope=Scope.APP)
    metrics = provide(Metrics, scope=Scope.APP)
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
    def session_factory(self, engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
        return make_session_factory(engine)

    @provide(scope=Scope.REQUEST)
    async def session(self, factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
        # Closing rolls back whatever the use case did not commit; committing is the use case's job.
        async with factory() as session:
            yield session

    @provide(scope=Scope.REQUEST)
    def miners(self, session: AsyncSession, lease: LeasePolicy) -> MinerRepository:
        return SqlMinerRepository(session, lease)

    sessions = provide(SqlSessionRepository, provides=SessionRepository, scope=Scope.REQUEST)
    presence = provide(SqlPresenceRepository, provides=PresenceRepository, scope=Scope.REQUEST)
    uow = provide(SqlUnitOfWork, provides=UnitOfWork, scope=Scope.REQUEST)
    tick_lock = provide(SqlTickLock, provides=TickLock, scope=Scope.REQUEST)
    token_lookup = provide(SqlTokenLookup, provides=TokenLookup, scope=Scope.APP)


class UseCaseProvider(Provider):
    scope = Scope.REQUEST

    register_miners = provide(RegisterMiners)
    update_status = provide(UpdateMinerStatus)
    renew_lease = provide(RenewLease)
    logout_miner = provide(LogoutMiner)
    list_miners = provide(ListMiners)


class MatchingProvider(Provider):
    """Matching answers from memory (APP scope); feedback writes through the request's session."""

    @provide(scope=Scope.APP)
    def policy(self, settings: Settings) -> MatchPolicy:
        return MatchPolicy(settings.default_weights, ExplorationPolicy(share=settings.exploration_share))

    @provide(scope=Scope.APP)
    def prices(self, settings: Settings) -> UnitPrices:
        return settings.billing_unit_prices

    @provide(scope=Scope.APP)
    def match_log(self) -> MatchLog:
        return MatchLog()

    match_job = provide(MatchJob, scope=Scope.APP)
    feedback = provide(SqlFeedbackRepository, provides=FeedbackRepository, scope=Scope.REQUEST)
    match_records = provide(SqlMatchRecordRepository, provides=MatchRecordRepository, scope=Scope.REQUEST)
    ledger = provide(SqlUsageLedger, provides=UsageLedger, scope=Scope.REQUEST)
    record_feedback = provide(RecordFeedback, scope=Scope.REQUEST)


def make_container(settings: Settings, *overrides: Provider) -> AsyncContainer:
    """The application container; tests pass providers that replace the outside world."""
    return make_async_container(
        CoreProvider(),
        PersistenceProvider(),
        UseCaseProvider(),
        MatchingProvider(),
        SlaProvider(),
        BillingProvider(),
        LitestarProvider(),
        *overrides,
        context={Settings: settings},
    )
