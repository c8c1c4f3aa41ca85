"""Ports: what the core needs from the outside world, named by role, one module per feature."""

from poolhub.domain.ports.billing import (
    BillingGateway,
    BillingHealth,
    BillingLedger,
    PendingSelection,
    RequeueSelection,
    RetryMark,
    UsageLedger,
)
from poolhub.domain.ports.live import ChangeKind, ChangeLog, LiveState
from poolhub.domain.ports.matching import (
    FeedbackEntry,
    FeedbackRepository,
    MatchRecord,
    MatchRecordRepository,
)
from poolhub.domain.ports.miners import (
    MinerRegistration,
    MinerRepository,
    PresenceRepository,
    RegistrationStore,
    SessionRepository,
    TokenLookup,
)
from poolhub.domain.ports.sla import (
    CapacityRepository,
    FeedbackWindowStats,
    MinerSlaFacts,
    OpenViolationKey,
    SlaRepository,
    StoredMetric,
    StoredSnapshot,
    StoredViolation,
)
from poolhub.domain.ports.system import Clock, RandomSource, TickLock, TokenSource, UnitOfWork

__all__ = [
    "BillingGateway",
    "BillingHealth",
    "BillingLedger",
    "CapacityRepository",
    "ChangeKind",
    "ChangeLog",
    "Clock",
    "FeedbackEntry",
    "FeedbackRepository",
    "FeedbackWindowStats",
    "LiveState",
    "MatchRecord",
    "MatchRecordRepository",
    "MinerRegistration",
    "MinerRepository",
    "MinerSlaFacts",
    "OpenViolationKey",
    "PendingSelection",
    "PresenceRepository",
    "RandomSource",
    "RegistrationStore",
    "RequeueSelection",
    "RetryMark",
    "SessionRepository",
    "SlaRepository",
    "StoredMetric",
    "StoredSnapshot",
    "StoredViolation",
    "TickLock",
    "TokenLookup",
    "TokenSource",
    "UnitOfWork",
    "UsageLedger",
]
