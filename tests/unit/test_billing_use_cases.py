"""Billing use cases over in-memory fakes: sync, backoff, rejection, the breaker, api_calls, reports."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from poolhub.domain.billing import (
    DEFAULT_UNIT_PRICES,
    BackoffPolicy,
    BillingPermanentError,
    BillingRetryableError,
    LedgerStatus,
    StatusTotal,
    UnitPrices,
    UsageRecord,
    manual_usage,
    summarize_usage,
)
from poolhub.domain.errors import (
    BillingRejectedError,
    BillingUnavailableError,
    ConflictError,
    InvalidInputError,
)
from poolhub.domain.use_cases.billing_queries import (
    GenerateInvoice,
    UsageQuery,
    UsageReport,
)
from poolhub.domain.use_cases.derive_api_calls import ApiCallsPolicy, DeriveApiCalls
from poolhub.domain.use_cases.record_usage import ManualUsage, RecordManualUsage
from poolhub.domain.use_cases.sync_usage import SyncLimits, SyncRequest, SyncUsage
from tests.fakes import (
    FakeBillingGateway,
    FakeBillingLedger,
    FakeUnitOfWork,
    FixedClock,
    FixedRandom,
    outage,
)

PRICES = UnitPrices.parse(DEFAULT_UNIT_PRICES)
NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def line(
    number: int, *, miner: str | None = "m-1", resource: str = "gpu_hours", at: datetime = NOW
) -> UsageRecord:
    record = manual_usage(
        tenant_id="acme",
        resource_type=resource,
        quantity=Decimal(number),
        unit_price=None,
        recorded_at=at,
        prices=PRICES,
        request_id=f"r{number}",
    )
    return dataclasses.replace(record, miner_id=miner)


class World:
    def __init__(self, *, limits: SyncLimits | None = None, draws: tuple[float, ...] = (0.5,)) -> None:
        self.ledger = FakeBillingLedger()
        self.gateway = FakeBillingGateway()
        self.uow = FakeUnitOfWork()
        self.clock = FixedClock(NOW)
        self.random = FixedRandom(*draws)
        self.backoff = BackoffPolicy(base_seconds=30, factor=2, max_seconds=3600, jitter=0.2)
        self.derive = DeriveApiCalls(self.ledger, self.uow, self.clock, PRICES, ApiCallsPolicy())
        self.sync = SyncUsage(
            self.ledger,
            self.gateway,
            self.uow,
            self.clock,
            self.random,
            self.backoff,
            limits or SyncLimits(batch_size=2, concurrency=2, breaker_threshold=100),
            self.derive,
        )

    async def seed(self, count: int, **kwargs: object) -> None:
        await self.ledger.add([line(n, **kwargs) for n in range(1, count + 1)])  # type: ignore[arg-type]

    def statuses(self) -> list[LedgerStatus]:
        return [entry.status for _, entry in sorted(self.ledger.entries.items())]


# --- SyncUsage -------------------------------------------------------------------------------------


async def test_every_pending_line_is_sent_once_and_marked_synced_batch_by_batch() -> None:
    world = World()
    await world.seed(5)

    report = await world.sync.execute(SyncRequest())

    assert (report.records_sent, report.records_failed, report.records_rejected) == (5, 0, 0)
    assert (report.records_pending, report.pending_total) == (0, 0)
    assert sorted(world.gateway.sends) == sorted(world.gateway.received)
    assert len(world.gateway.received) == 5
    assert world.statuses() == [LedgerStatus.SYNCED] * 5
    # Batches of 2, 2 and 1, each claimed in a transaction of its own and marked in another (nothing is
    # sent inside a transaction), then the run's state: progress is durable batch by batch.
    assert world.uow.commits == 7
    assert all(entry.synced_at == NOW and entry.attempts == 1 for entry in world.ledger.entries.values())


async def test_a_second_sync_sends_nothing() -> None:
    world = World()
    await world.seed(3)
    await world.sync.execute(SyncRequest())
    world.gateway.sends.clear()

    report = await world.sync.execute(SyncRequest())

    assert world.gateway.sends == []
    assert report.records_sent == 0


async def test_a_retryable_failure_leaves_the_line_pending_with_jittered_backoff() -> None:
    world = World(draws=(0.0, 0.999))
    await world.seed(2)
    world.gateway.fail = outage

    report = await world.sync.execute(SyncRequest())

    assert (report.records_sent, report.records_failed, report.records_pending) == (0, 2, 2)
    first, second = (world.ledger.entries[1], world.ledger.entries[2])
    assert first.status is second.status is LedgerStatus.PENDING
    assert first.attempts == second.attempts == 1
    assert "503" in (first.last_error or "")
    assert first.next_attempt_at is not None and second.next_attempt_at is not None
    delays = sorted(
        [(first.next_attempt_at - NOW).total_seconds(), (second.next_attempt_at - NOW).total_seconds()]
    )
    assert delays[0] == pytest.approx(24.0)  # 30 s × (1 − 0.2)
    assert delays[1] == pytest.approx(30 * (1 + 0.2 * (2 * 0.999 - 1)))


async def test_backoff_grows_with_each_failed_attempt() -> None:
    world = World()
    await world.seed(1)
    world.gateway.fail = outage
    for expected in (30, 60, 120):
        await world.sync.execute(SyncRequest())
        entry = world.ledger.entries[1]
        assert entry.next_attempt_at == NOW + timedelta(seconds=expected)
    assert world.ledger.entries[1].attempts == 3


async def test_the_scheduler_respects_backoff_but_an_operator_sync_does_not() -> None:
    world = World()
    await world.seed(1)
    world.gateway.fail = outage
    await world.sync.execute(SyncRequest())
    world.gateway.fail = lambda _: None
    world.gateway.sends.clear()

    scheduled = await world.sync.execute(SyncRequest(respect_backoff=True))
    assert scheduled.records_sent == 0 and world.gateway.sends == []

    world.clock.advance(timedelta(seconds=31))
    scheduled = await world.sync.execute(SyncRequest(respect_backoff=True))
    assert scheduled.records_sent == 1


async def test_an_operator_sync_sends_lines_still_in_backoff() -> None:
    world = World()
    await world.seed(1)
    world.gateway.fail = outage
    await world.sync.execute(SyncRequest())
    world.gateway.fail = lambda _: None

    report = await world.sync.execute(SyncRequest())

    assert report.records_sent == 1
    assert world.statuses() == [LedgerStatus.SYNCED]


async def test_a_rejection_is_kept_with_its_reason_and_never_retried() -> None:
    world = World()
    await world.seed(2)
    world.gateway.fail = lambda record: (
        BillingPermanentError(
            "coordinator billing send_usage answered HTTP 422: not billable",
            status_code=422,
            reason="not billable",
        )
        if record.idempotency_key == "manual:r1"
        else None
    )

    report = await world.sync.execute(SyncRequest())
    assert (report.records_sent, report.records_rejected, report.records_failed) == (1, 1, 0)
    rejected = world.ledger.entries[1]
    assert rejected.status is LedgerStatus.REJECTED
    assert "422" in (rejected.last_error or "") and "not billable" in (rejected.last_error or "")

    world.gateway.sends.clear()
    world.clock.advance(timedelta(days=2))
    await world.sync.execute(SyncRequest())
    await world.sync.execute(SyncRequest(respect_backoff=True))
    assert world.gateway.sends == []


async def test_a_run_stops_once_the_coordinator_keeps_failing() -> None:
    world = World(limits=SyncLimits(batch_size=4, concurrency=1, breaker_threshold=3))
    await world.seed(10)
    world.gateway.fail = outage

    report = await world.sync.execute(SyncRequest())

    assert len(world.gateway.sends) == 3
    assert report.stopped_early
    assert (report.records_failed, report.records_skipped, report.records_pending) == (3, 1, 10)
    untouched = [entry for entry in world.ledger.entries.values() if entry.attempts == 0]
    assert len(untouched) == 7


async def test_a_definite_answer_resets_the_breaker() -> None:
    world = World(limits=SyncLimits(batch_size=10, concurrency=1, breaker_threshold=2))
    await world.seed(6)
    world.gateway.fail = lambda record: outage(record) if record.quantity % 2 else None

    report = await world.sync.execute(SyncRequest())

    assert not report.stopped_early
    assert (report.records_sent, report.records_failed) == (3, 3)


async def test_a_crash_between_send_and_commit_resends_under_the_same_key() -> None:
    world = World(limits=SyncLimits(batch_size=10, concurrency=2, breaker_threshold=10))
    await world.seed(2)

    def crash_after_sending(_: UsageRecord) -> None:
        world.uow.fail_next_commit = True  # the claim was committed; the marks' commit fails

    world.gateway.fail = crash_after_sending
    with pytest.raises(ConnectionError):
        await world.sync.execute(SyncRequest())
    # The fake ledger applied the marks and the release before the failed commit; a real rollback
    # undoes them, so the lines are pending and still claimed by the run that died.
    for entry_id in list(world.ledger.entries):
        world.ledger._update(entry_id, status=LedgerStatus.PENDING, attempts=0, synced_at=None)
        world.ledger.claims[entry_id] = ("dead-run", NOW + timedelta(seconds=600))
    world.gateway.fail = lambda _: None

    assert (await world.sync.execute(SyncRequest())).records_sent == 0  # claimed: not sent twice at once
    world.clock.advance(timedelta(seconds=601))
    await world.sync.execute(SyncRequest())

    assert len(world.gateway.sends) == 4
    assert len(world.gateway.received) == 2  # the coordinator counts each key once
    assert world.statuses() == [LedgerStatus.SYNCED] * 2


async def test_a_sync_can_be_limited_to_one_miner_and_recent_usage() -> None:
    world = World()
    await world.ledger.add(
        [line(1, miner="m-1"), line(2, miner="m-2"), line(3, miner="m-1", at=NOW - timedelta(hours=5))]
    )

    report = await world.sync.execute(SyncRequest(miner_id="m-1", hours_back=2))

    assert world.gateway.sends == ["manual:r1"]
    assert (report.records_sent, report.records_pending, report.pending_total) == (1, 0, 2)


def test_sync_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        SyncLimits(batch_size=0)


# --- DeriveApiCalls --------------------------------------------------------------------------------


async def test_api_calls_are_derived_per_tenant_and_closed_hour() -> None:
    world = World()
    ten = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    world.ledger.matches = [
        ("acme", ten + timedelta(minutes=1)),
        ("acme", ten + timedelta(minutes=59)),
        (None, ten + timedelta(minutes=30)),
        ("acme", ten + timedelta(hours=1, minutes=5)),
        ("acme", ten + timedelta(hours=2, minutes=10)),  # 12:10, the open hour: not yet
    ]

    added = await world.derive.execute()

    lines = {entry.record.idempotency_key: entry.record for entry in world.ledger.entries.values()}
    assert added == 3
    assert set(lines) == {
        "api_calls:acme:2026-03-01T10",
        "api_calls:unattributed:2026-03-01T10",
        "api_calls:acme:2026-03-01T11",
    }
    acme_ten = lines["api_calls:acme:2026-03-01T10"]
    assert acme_ten.quantity == 2 and acme_ten.unit == "calls"
    assert acme_ten.amount == Decimal("0.00020000")
    assert acme_ten.usage_end - acme_ten.usage_start == timedelta(hours=1)
    assert world.uow.commits == 1


async def test_deriving_again_adds_nothing_and_later_hours_follow() -> None:
    world = World()
    world.ledger.matches = [("acme", datetime(2026, 3, 1, 10, 5, tzinfo=UTC))]
    await world.derive.execute()
    assert await world.derive.execute() == 0

    world.ledger.matches.append(("acme", datetime(2026, 3, 1, 12, 40, tzinfo=UTC)))
    world.clock.advance(timedelta(hours=1, minutes=10))  # 13:40: 12:00-13:00 has settled
    assert await world.derive.execute() == 1
    assert len(world.ledger.entries) == 2


async def test_an_hour_that_closed_moments_ago_waits_for_its_late_records() -> None:
    world = World()
    world.clock.current = datetime(2026, 3, 1, 12, 2, tzinfo=UTC)
    world.ledger.matches = [("acme", datetime(2026, 3, 1, 11, 59, tzinfo=UTC))]
    assert await world.derive.execute() == 0
    world.clock.current = datetime(2026, 3, 1, 12, 6, tzinfo=UTC)
    assert await world.derive.execute() == 1


async def test_a_sync_derives_api_calls_first_and_sends_them() -> None:
    world = World()
    world.ledger.matches = [("acme", datetime(2026, 3, 1, 9, 5, tzinfo=UTC))]

    report = await world.sync.execute(SyncRequest())

    assert report.api_calls_added == 1
    assert list(world.gateway.received) == ["api_calls:acme:2026-03-01T09"]


# --- RecordManualUsage -------------------------------------------------------------------------------


def recorder(world: World) -> RecordManualUsage:
    return RecordManualUsage(world.ledger, world.uow, world.clock, world.random, PRICES)


async def test_a_manual_line_is_pending_with_the_configured_price() -> None:
    world = World()
    recorded = await recorder(world).execute(
        ManualUsage(
            tenant_id="acme", resource_type="gpu_hours", quantity=Decimal("2.5"), metadata={"note": "x"}
        )
    )
    assert recorded.created
    record = recorded.entry.record
    assert record.idempotency_key == "manual:id-1"
    assert (record.unit_price, record.amount, record.unit) == (
        Decimal("0.50"),
        Decimal("1.25000000"),
        "hours",
    )
    assert recorded.entry.status is LedgerStatus.PENDING
    assert world.uow.commits == 1


async def test_the_same_request_key_records_once() -> None:
    world = World()
    usage = ManualUsage(tenant_id="acme", resource_type="api_calls", quantity=Decimal(10), request_key="op-7")
    first = await recorder(world).execute(usage)
    again = await recorder(world).execute(usage)

    assert first.created and not again.created
    assert again.entry.id == first.entry.id
    assert len(world.ledger.entries) == 1
    assert world.uow.commits == 1


async def test_a_request_key_reused_for_other_usage_conflicts() -> None:
    world = World()
    await recorder(world).execute(
        ManualUsage(tenant_id="acme", resource_type="api_calls", quantity=Decimal(10), request_key="op-7")
    )
    with pytest.raises(ConflictError, match="op-7"):
        await recorder(world).execute(
            ManualUsage(tenant_id="acme", resource_type="api_calls", quantity=Decimal(11), request_key="op-7")
        )


async def test_an_unpriced_resource_type_needs_an_explicit_price() -> None:
    world = World()
    with pytest.raises(InvalidInputError, match="no configured unit price"):
        await recorder(world).execute(
            ManualUsage(tenant_id="acme", resource_type="tpu_hours", quantity=Decimal(1))
        )
    recorded = await recorder(world).execute(
        ManualUsage(
            tenant_id="acme", resource_type="tpu_hours", quantity=Decimal(2), unit_price=Decimal("1.10")
        )
    )
    assert recorded.entry.record.amount == Decimal("2.20000000")
    assert recorded.entry.record.unit == "units"


# --- reports and invoices ----------------------------------------------------------------------------


def test_summaries_split_quantity_by_status() -> None:
    def total(status: LedgerStatus, quantity: str) -> StatusTotal:
        return StatusTotal(
            "acme", "m-1", "gpu_hours", "hours", "USD", status, Decimal(quantity), Decimal(quantity) / 2
        )

    [summary] = summarize_usage(
        [
            total(LedgerStatus.SYNCED, "1.5"),
            total(LedgerStatus.PENDING, "2"),
            total(LedgerStatus.REJECTED, "0.5"),
        ]
    )
    assert (summary.quantity, summary.amount) == (Decimal("4.0"), Decimal("2.00"))
    assert (summary.synced_quantity, summary.pending_quantity, summary.rejected_quantity) == (
        Decimal("1.5"),
        Decimal(2),
        Decimal("0.5"),
    )


async def test_the_usage_report_shows_the_ledger_and_the_coordinator() -> None:
    world = World()
    await world.seed(2)
    world.gateway.metrics_answer = {"total_records": 2}
    view = await UsageReport(world.ledger, world.gateway, world.clock, world.uow, PRICES).execute(
        UsageQuery(hours=24)
    )
    assert view.period_end == NOW and view.period_start == NOW - timedelta(hours=24)
    [summary] = view.lines
    assert summary.quantity == 3 and summary.pending_quantity == 3
    assert view.coordinator == {"total_records": 2}


@pytest.mark.parametrize(
    "failure",
    [BillingRetryableError("down"), BillingPermanentError("no", status_code=401, reason="bad key")],
)
async def test_the_usage_report_survives_a_failing_coordinator(failure: Exception) -> None:
    world = World()
    world.gateway.metrics_answer = failure
    view = await UsageReport(world.ledger, world.gateway, world.clock, world.uow, PRICES).execute(
        UsageQuery()
    )
    assert view.coordinator is None


async def test_an_invoice_needs_a_period_that_ends_after_it_starts() -> None:
    world = World()
    with pytest.raises(InvalidInputError, match="period_end"):
        await GenerateInvoice(world.gateway).execute("acme", NOW, NOW)
    assert world.gateway.invoices == []


@pytest.mark.parametrize(
    ("failure", "kind", "words"),
    [
        (BillingRetryableError("timed out"), BillingUnavailableError, "could not generate"),
        (BillingPermanentError("HTTP 400", status_code=400, reason="x"), BillingRejectedError, "refused"),
    ],
)
async def test_an_invoice_failure_says_what_failed(
    failure: Exception, kind: type[Exception], words: str
) -> None:
    world = World()
    world.gateway.invoice_answer = failure
    with pytest.raises(kind, match=words):
        await GenerateInvoice(world.gateway).execute("acme", NOW - timedelta(days=1), NOW)
