"""Billing delivery under misconfiguration and concurrency: a coordinator answering 401/403/404/3xx blocks
the run without rejecting anything, rejected lines can be requeued, claimed lines are sent by one run at a
time, and no database transaction waits on the coordinator (registrations and feedback never stall)."""

# ruff: noqa: F811  (the billing fixtures are imported from test_billing_sync and requested by name)
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from poolhub.adapters.db.billing_repositories import SqlUsageLedger
from poolhub.adapters.db.engine import (
    make_engine,
    make_read_engine,
    make_read_session_factory,
    make_session_factory,
)
from poolhub.adapters.db.models import UsageRecordRow
from poolhub.domain.billing import DEFAULT_UNIT_PRICES, UnitPrices, manual_usage
from tests.integration.conftest import COORDINATOR, Hub, bearer, register
from tests.integration.coordinator_stub_server import CoordinatorStubServer
from tests.integration.test_billing_sync import (  # noqa: F401  (fixtures: stub, fresh_stub, hub)
    OPERATOR,
    ShortTimeoutCoordinator,
    assert_stub_holds_ledger_once,
    billing_settings,
    fresh_stub,
    hub,
    hub_with_overrides,
    ledger,
    metric,
    record,
    stub,
    sync,
    sync_answer,
    usage,
)

PRICES = UnitPrices.parse(DEFAULT_UNIT_PRICES)


async def status(hub: Hub) -> dict[str, Any]:
    response = await hub.client.get("/sla/status", headers=OPERATOR)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def seed_ledger(url: str, count: int, tenant: str = "acme") -> None:
    """`count` pending manual lines written straight through the ledger adapter."""
    engine = create_async_engine(url)
    now = datetime.now(UTC)
    records = [
        manual_usage(
            tenant_id=tenant,
            resource_type="gpu_hours",
            quantity=Decimal(n + 1),
            unit_price=None,
            recorded_at=now,
            prices=PRICES,
            request_id=f"seed-{n}",
        )
        for n in range(count)
    ]
    try:
        async with AsyncSession(engine) as session:
            assert await SqlUsageLedger(session).add(records) == count
            await session.commit()
    finally:
        await engine.dispose()


# --- a misconfigured coordinator (#13.6) ------------------------------------------------------------------


async def test_a_coordinator_answering_401_then_200_rejects_nothing_and_delivers_everything_once(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    for quantity in ("1", "2", "3"):
        await record(hub, quantity=quantity)
    stub.control(fail_status=401)

    answer = await sync_answer(hub)

    assert answer["records_rejected"] == 0 and answer["records_sent"] == 0
    assert answer["records_pending"] == 3
    assert answer["billing_blocked"].startswith("coordinator answered 401")
    assert stub.snapshot()["requests"] == 1  # the run stopped at its first answer
    rows = await ledger(hub)
    assert {row["status"] for row in rows} == {"pending"}
    assert all(row["attempts"] == 0 for row in rows)
    assert (await status(hub))["billing_blocked"] == answer["billing_blocked"]
    assert await metric(hub, "poolhub_billing_sync_blocked") == 1
    assert (await sync_answer(hub))["billing_blocked"] == answer["billing_blocked"]  # still blocked

    stub.control(fail_status=None)
    answer = await sync_answer(hub)

    assert (answer["records_sent"], answer["records_rejected"], answer["billing_blocked"]) == (3, 0, None)
    assert (await status(hub))["billing_blocked"] is None
    assert await metric(hub, "poolhub_billing_sync_blocked") == 0
    assert_stub_holds_ledger_once(stub, await ledger(hub))
    assert stub.snapshot()["duplicates"] == 0


@pytest.mark.parametrize("code", [403, 404, 302, 307])
async def test_forbidden_missing_and_redirecting_coordinators_block_instead_of_rejecting(
    hub: Hub, stub: CoordinatorStubServer, code: int
) -> None:
    await record(hub, quantity="1")
    await record(hub, quantity="2")
    stub.control(fail_status=code)

    answer = await sync_answer(hub)

    assert (answer["records_rejected"], answer["records_pending"]) == (0, 2)
    assert f"coordinator answered {code}" in answer["billing_blocked"]
    assert {row["status"] for row in await ledger(hub)} == {"pending"}


@pytest.mark.parametrize("code", [400, 409])
async def test_only_record_level_refusals_reject(hub: Hub, stub: CoordinatorStubServer, code: int) -> None:
    await record(hub, quantity="1")
    stub.control(fail_status=code)

    answer = await sync_answer(hub)

    assert (answer["records_rejected"], answer["billing_blocked"]) == (1, None)
    [row] = await ledger(hub)
    assert row["status"] == "rejected" and str(code) in row["last_error"]


async def test_rejected_lines_are_requeued_with_their_keys_and_delivered_once(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    await record(hub, quantity="1")
    await record(hub, quantity="2")
    await record(hub, tenant="globex", quantity="5")
    await record(hub, resource="compute_hours", quantity="4")
    stub.control(reject_resource_types=["gpu_hours"])
    assert (await sync(hub))["records_rejected"] == 3
    rejected = {row["id"]: row["idempotency_key"] for row in await ledger(hub, status="rejected")}
    stub.control(reject_resource_types=[])

    response = await hub.client.post(
        "/sla/billing/requeue", json={"tenant_id": "acme", "resource_type": "gpu_hours"}, headers=OPERATOR
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"records_requeued": 2}
    pending = await ledger(hub, status="pending")
    assert len(pending) == 2
    assert all(rejected[row["id"]] == row["idempotency_key"] for row in pending)
    assert [row["tenant_id"] for row in await ledger(hub, status="rejected")] == ["globex"]
    assert (await sync(hub))["records_sent"] == 2
    synced = await ledger(hub, status="synced")
    assert_stub_holds_ledger_once(stub, synced)
    # No body: every rejected line; a window that selects nothing requeues nothing.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    nothing = await hub.client.post("/sla/billing/requeue", json={"since": later}, headers=OPERATOR)
    assert nothing.json() == {"records_requeued": 0}
    everything = await hub.client.post("/sla/billing/requeue", headers=OPERATOR)
    assert everything.json() == {"records_requeued": 1}


@pytest.mark.parametrize(
    "body",
    [
        {"since": "2026-03-02T00:00:00Z", "until": "2026-03-01T00:00:00Z"},
        {"since": "2026-03-02T00:00:00"},
        {"tenant_id": "a b"},
        {"resource_type": "GPU"},
    ],
)
async def test_a_bad_requeue_is_400_and_changes_nothing(
    hub: Hub, stub: CoordinatorStubServer, body: dict[str, Any]
) -> None:
    await record(hub, quantity="1")
    stub.control(fail_status=422)
    await sync(hub)
    response = await hub.client.post("/sla/billing/requeue", json=body, headers=OPERATOR)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert [row["status"] for row in await ledger(hub)] == ["rejected"]


async def test_requeue_is_for_operators(hub: Hub) -> None:
    assert (await hub.client.post("/sla/billing/requeue")).status_code == 401
    assert (await hub.client.post("/sla/billing/requeue", headers=bearer(COORDINATOR))).status_code == 403


# --- claims (#11.7) ----------------------------------------------------------------------------------------


async def test_two_processes_syncing_at_once_send_each_line_exactly_once(
    clean_db: str, stub: CoordinatorStubServer
) -> None:
    await seed_ledger(clean_db, 240)
    stub.control(delay_ms=10)
    settings = billing_settings(clean_db, stub)
    # The configured 5 s client timeout: on a loaded machine 96 requests in flight must not time out.
    async with hub_with_overrides(settings) as first, hub_with_overrides(settings) as second:
        answers = await asyncio.gather(sync(first), sync(second), sync(first))

        assert sum(a["records_sent"] for a in answers) == 240
        assert sum(a["records_failed"] + a["records_rejected"] for a in answers) == 0
        state = stub.snapshot()
        assert (state["events"], state["duplicates"], state["requests"]) == (240, 0, 240)
        assert_stub_holds_ledger_once(stub, await ledger(first))


async def test_lines_claimed_by_a_live_run_wait_and_a_dead_runs_claim_lapses(
    hub: Hub, clean_db: str, stub: CoordinatorStubServer
) -> None:
    for quantity in ("1", "2", "3"):
        await record(hub, quantity=quantity)
    engine = create_async_engine(clean_db)
    try:
        async with engine.begin() as connection:
            claimed = update(UsageRecordRow).where(UsageRecordRow.quantity_e12 < 3 * 10**12)
            await connection.execute(
                claimed.values(
                    claimed_by="another-run", claimed_until=datetime.now(UTC) + timedelta(minutes=5)
                )
            )
        answer = await sync(hub)
        assert (answer["records_sent"], answer["records_pending"]) == (1, 2)
        assert stub.snapshot()["requests"] == 1

        async with engine.begin() as connection:  # that run died: its claim lapsed
            await connection.execute(claimed.values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))
        assert (await sync(hub))["records_sent"] == 2
    finally:
        await engine.dispose()
    assert_stub_holds_ledger_once(stub, await ledger(hub))


# --- no transaction waits on the coordinator (#11.7) ------------------------------------------------------

SLOW_MS = 3000
# A write stalled behind the coordinator would take SLOW_MS - 0.3 s; an unstalled one, far less even on a
# loaded machine. Half the delay tells them apart.
STALLED_SEC = SLOW_MS / 2000


@pytest.fixture
async def patient_hub(clean_db: str, stub: CoordinatorStubServer) -> AsyncIterator[Hub]:
    """The coordinator client as configured (5 s timeout), so a 3 s coordinator is slow, not down."""
    async with hub_with_overrides(billing_settings(clean_db, stub)) as running:
        yield running


async def timed(coroutine: Any) -> float:
    started = time.perf_counter()
    await coroutine
    return time.perf_counter() - started


async def register_and_complete_a_job(hub: Hub) -> None:
    await register(hub.client, "m-fast")
    feedback = {"job_id": "job-f", "miner_id": "m-fast", "outcome": "completed", "duration_ms": 60_000}
    answer = await hub.client.post("/v1/feedback", json=feedback, headers=bearer(COORDINATOR))
    assert answer.status_code == 201, answer.text


async def test_a_slow_coordinator_does_not_stall_registrations_and_feedback_during_a_sync(
    patient_hub: Hub, stub: CoordinatorStubServer
) -> None:
    hub = patient_hub
    await record(hub, quantity="1")
    await record(hub, quantity="2")
    stub.control(delay_ms=SLOW_MS)

    syncing = asyncio.create_task(sync_answer(hub))
    await asyncio.sleep(0.3)  # the run is waiting on the coordinator now
    elapsed = await timed(register_and_complete_a_job(hub))
    assert not syncing.done()
    assert (await syncing)["records_sent"] == 2

    assert elapsed < STALLED_SEC, f"writes waited {elapsed:.2f} s behind a sync waiting on the coordinator"


async def test_a_slow_coordinator_does_not_stall_registrations_during_a_usage_report(
    patient_hub: Hub, stub: CoordinatorStubServer
) -> None:
    hub = patient_hub
    await record(hub, quantity="1")
    await sync(hub)
    stub.control(delay_ms=SLOW_MS)

    reporting = asyncio.create_task(usage(hub))
    await asyncio.sleep(0.3)
    elapsed = await timed(register_and_complete_a_job(hub))
    assert not reporting.done()
    report = await reporting

    assert report["coordinator"] is not None and report["coordinator"]["total_records"] == 1
    assert elapsed < STALLED_SEC, f"writes waited {elapsed:.2f} s behind a report waiting on the coordinator"


async def test_a_read_only_session_never_holds_the_write_lock(clean_db: str) -> None:
    engine = make_engine(clean_db)
    read_engine = make_read_engine(clean_db, engine)
    try:
        async with make_read_session_factory(read_engine)() as reader:
            await reader.execute(text("SELECT count(*) FROM usage_records"))  # its transaction is open
            async with make_session_factory(engine)() as writer:
                await writer.execute(text("DELETE FROM billing_state"))
                await asyncio.wait_for(writer.commit(), timeout=2)
    finally:
        await read_engine.dispose()
        await engine.dispose()


# --- the running hour in the usage report (#11.6) ---------------------------------------------------------


async def test_the_running_hours_api_calls_show_as_pending_and_are_not_sent(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    await register(hub.client, "m-1")
    for number, tenant in enumerate(["acme", "acme", "acme", None]):
        job: dict[str, Any] = {"job_id": f"job-{number}", "requirements": {}, "top_k": 1}
        if tenant:
            job["tenant_id"] = tenant
        answer = await hub.client.post("/v1/match", json=job, headers=bearer(COORDINATOR))
        assert answer.status_code == 200, answer.text
    await hub.flush()  # the match records are written behind

    totals = {(t["tenant_id"], t["resource_type"]): t for t in (await usage(hub))["totals"]}

    acme = totals[("acme", "api_calls")]
    assert (acme["quantity"], acme["pending_quantity"], acme["synced_quantity"]) == ("3", "3", "0")
    assert (acme["unit"], acme["amount"], acme["miner_id"]) == ("calls", "0.00030000", None)
    assert totals[("unattributed", "api_calls")]["pending_quantity"] == "1"
    only_acme = (await usage(hub, tenant_id="acme"))["totals"]
    assert [(t["tenant_id"], t["quantity"]) for t in only_acme] == [("acme", "3")]
    assert (await usage(hub, miner_id="m-1"))["totals"] == []  # api_calls belong to no miner

    assert (await sync(hub))["records_sent"] == 0  # the hour has not closed: nothing is billed yet
    assert await ledger(hub) == []
    assert stub.snapshot()["events"] == 0
