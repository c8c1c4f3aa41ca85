"""Shapes of the console-only operator routes under /console/api (the public API's routes stay as API.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from poolhub.app.http.schemas.common import Base, Id
from poolhub.app.http.schemas.match import MatchHints, MatchRequirements, MinerExplanationRead
from poolhub.app.http.schemas.miners import MinerRead


class ConsoleSession(Base):
    role: str


class ConsoleFeatures(Base):
    """Optional routes this build serves, so the page shows only what works."""

    requeue: bool
    livez: bool
    readyz: bool


class ConsoleMinerRead(Base, kw_only=True):
    miner: MinerRead
    load: Annotated[float, Meta(description="share of its slots in use (1 when busy)")]
    open_violations: int


class ConsoleMinerPage(Base, kw_only=True):
    items: list[ConsoleMinerRead]
    total: int
    regions: Annotated[list[str], Meta(description="every region in the directory, for the filter")]
    accels: Annotated[list[str], Meta(description="every accel in the directory, for the filter")]


class MinerCounts(Base):
    registered: int
    online: int


class SlotCounts(Base):
    total: int
    used: int
    free: int


class MatchActivityRead(Base):
    requests_total: int
    window_sec: Annotated[float, Meta(description="the window the rate and p99 cover (about 60 s)")]
    rate_per_sec: Annotated[float | None, Meta(description="null until a second sample exists")]
    p99_ms: float | None


class ViolationCount(Base):
    violation_type: str
    severity: str
    count: int


class SlaOverview(Base):
    status: str
    open_violations: list[ViolationCount]


class AmountsByStatus(Base, kw_only=True):
    currency: str
    pending_amount: str
    synced_amount: str
    rejected_amount: str


class BillingOverview(Base, kw_only=True):
    period_hours: int
    totals: list[AmountsByStatus]
    last_synced_at: Annotated[
        datetime | None, Meta(description="when the newest delivered ledger line was accepted")
    ]


class OverviewRead(Base, kw_only=True):
    generated_at: datetime
    miners: MinerCounts
    slots: SlotCounts
    matching: MatchActivityRead
    sla: SlaOverview
    billing: BillingOverview


class BillingLineRead(Base, kw_only=True):
    tenant_id: str
    resource_type: str
    unit: str
    currency: str
    quantity: str
    amount: str
    pending_quantity: str
    synced_quantity: str
    rejected_quantity: str
    pending_amount: str
    synced_amount: str
    rejected_amount: str


class BillingSummaryRead(Base, kw_only=True):
    period_start: datetime
    period_end: datetime
    lines: list[BillingLineRead]
    totals: list[AmountsByStatus]
    last_synced_at: datetime | None


class ExplainCreate(Base, kw_only=True):
    """A sample job and the miner to explain; nothing is recorded or billed."""

    miner_id: Id
    requirements: MatchRequirements = msgspec.field(default_factory=MatchRequirements)
    hints: MatchHints = msgspec.field(default_factory=MatchHints)


class ExplainRead(Base, kw_only=True):
    explain: Annotated[str, Meta(description="the pool-wide rejection counts, as POST /v1/match says")]
    eligible_count: int
    miner_explanation: MinerExplanationRead
