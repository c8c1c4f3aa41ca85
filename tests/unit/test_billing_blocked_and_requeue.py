"""Billing use cases, v1.1 rules over fakes: a misconfigured coordinator blocks a sync without marking
anything, rejected lines are requeued, and the usage report counts api_calls not derived yet."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from poolhub.domain.billing import (
    BillingMisconfiguredError,
    BillingPermanentError,
    LedgerStatus,
    UsageRecord,
)
from poolhub.domain.errors import InvalidInputError
from poolhub.domain.use_cases.billing_queries import Requeue, RequeueRejected, UsageQuery, UsageReport
from poolhub.domain.use_cases.sync_usage import SyncLimits, SyncRequest
from tests.unit.test_billing_use_cases import NOW, PRICES, World, line


def misconfigured(_: UsageRecord) -> Exception:
    return BillingMisconfiguredError(
        "coordinator billing send_usage answered HTTP 401: bad key", status_code=401, reason="bad key"
    )


async def test_a_misconfigured_coordinator_stops_the_run_at_its_first_answer_and_marks_nothing() -> None:
    world = World(limits=SyncLimits(batch_size=4, concurrency=4, breaker_threshold=100))
    await world.seed(10)
    world.gateway.fail = misconfigured

    report = await world.sync.execute(SyncRequest())

    assert world.gateway.sends == ["manual:r1"]  # the first line of a run goes alone
    assert report.stopped_early
    assert (report.records_sent, report.records_failed, report.records_rejected) == (0, 0, 0)
    assert report.records_pending == 10
    assert report.billing_blocked is not None and report.billing_blocked.startswith(
        "coordinator answered 401"
    )
    assert all(entry.attempts == 0 for entry in world.ledger.entries.values())
    assert world.statuses() == [LedgerStatus.PENDING] * 10
    assert world.ledger.claims == {}  # nothing stays claimed

    world.gateway.fail = lambda _: None
    report = await world.sync.execute(SyncRequest())
    assert (report.records_sent, report.billing_blocked) == (10, None)


async def test_a_run_with_nothing_to_send_keeps_the_blocked_state() -> None:
    world = World()
    world.ledger.blocked = "coordinator answered 404 …"
    report = await world.sync.execute(SyncRequest())
    assert report.billing_blocked == "coordinator answered 404 …"


async def test_requeue_puts_selected_rejections_back_with_their_keys() -> None:
    world = World()
    await world.ledger.add([line(1), line(2, resource="compute_hours"), line(3, at=NOW - timedelta(days=2))])
    world.gateway.fail = lambda _: BillingPermanentError("HTTP 422", status_code=422, reason="no")
    await world.sync.execute(SyncRequest())
    assert world.statuses() == [LedgerStatus.REJECTED] * 3

    count = await RequeueRejected(world.ledger, world.uow).execute(
        Requeue(resource_type="gpu_hours", since=NOW - timedelta(hours=1))
    )

    assert count == 1
    assert world.statuses() == [LedgerStatus.PENDING, LedgerStatus.REJECTED, LedgerStatus.REJECTED]
    with pytest.raises(InvalidInputError, match="until"):
        await RequeueRejected(world.ledger, world.uow).execute(Requeue(since=NOW, until=NOW))


async def test_the_usage_report_counts_calls_not_yet_derived_as_pending() -> None:
    world = World()
    hour = NOW.replace(minute=0)
    moment_ago = NOW - timedelta(minutes=1)
    world.ledger.matches = [
        ("acme", hour - timedelta(hours=2)),
        ("acme", moment_ago),
        ("acme", moment_ago),
        (None, moment_ago),
    ]
    await world.derive.execute()  # the hour two ago is in the ledger now; the running one is not
    world.gateway.fail = lambda _: None

    view = await UsageReport(world.ledger, world.gateway, world.clock, world.uow, PRICES).execute(
        UsageQuery()
    )

    lines = {(ln.tenant_id, ln.resource_type): ln for ln in view.lines}
    acme = lines[("acme", "api_calls")]
    assert (acme.quantity, acme.pending_quantity) == (Decimal(3), Decimal(3))
    assert lines[("unattributed", "api_calls")].pending_quantity == 1
    assert world.uow.rollbacks == 1  # the read ended before the coordinator's answer was awaited
