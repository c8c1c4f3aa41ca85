"""Billing end to end: the app's ledger synced to the coordinator stub over real HTTP on 127.0.0.1.

Outages, rejections and recoveries are switched on the stub; every claim is checked against what the stub
stored (distinct idempotency keys, summed quantities) and what the ledger says.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from dishka import Provider, Scope, provide
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from poolhub.adapters.billing import make_http_client
from poolhub.adapters.db.billing_repositories import SqlUsageLedger
from poolhub.adapters.db.models import MatchRecordRow, UsageRecordRow
from poolhub.app.ioc.container import make_container
from poolhub.app.main import create_app, periodic_jobs
from poolhub.app.runtime.billing_jobs import BILLING_SYNC_JOB
from poolhub.app.runtime.schedulers import tick_of
from poolhub.app.settings import Settings
from poolhub.domain.billing import DEFAULT_UNIT_PRICES, UnitPrices, usage_from_completed_job
from tests.integration.conftest import (
    ADMIN,
    COORDINATOR,
    Hub,
    bearer,
    register,
    started_hub,
    test_settings,
)
from tests.integration.coordinator_stub_server import CoordinatorStubServer

API_KEY = "test-coordinator-api-key"
OPERATOR = bearer(ADMIN)
CLIENT_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def stub() -> Iterator[CoordinatorStubServer]:
    with CoordinatorStubServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_stub(stub: CoordinatorStubServer) -> None:
    stub.reset()


class ShortTimeoutCoordinator(Provider):
    """The coordinator's client with a short timeout, so that outage tests stay fast."""

    @provide(scope=Scope.APP)
    async def http(self, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        client = make_http_client(
            settings.coordinator_billing_url, settings.coordinator_api_key, timeout_s=CLIENT_TIMEOUT_S
        )
        yield client
        await client.aclose()


class hub_with_overrides(started_hub):
    """`started_hub` over a container built with override providers."""

    def __init__(self, settings: Settings, *overrides: Provider) -> None:
        self.app = create_app(settings, make_container(settings, *overrides))
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._task = None


def billing_settings(url: str, stub: CoordinatorStubServer) -> Settings:
    # A very long sync interval: only the ticks a test runs by hand happen.
    return test_settings(url, coordinator_billing_url=stub.base_url, billing_sync_interval_hours=10_000.0)


@pytest.fixture
async def hub(clean_db: str, stub: CoordinatorStubServer) -> AsyncIterator[Hub]:
    async with hub_with_overrides(billing_settings(clean_db, stub), ShortTimeoutCoordinator()) as running:
        yield running


async def record(
    hub: Hub, tenant: str = "acme", resource: str = "gpu_hours", quantity: str = "1.5", **extra: Any
) -> dict[str, Any]:
    body = {"tenant_id": tenant, "resource_type": resource, "quantity": quantity, **extra}
    response = await hub.client.post("/sla/billing/usage/record", json=body, headers=OPERATOR)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def sync_answer(hub: Hub, **body: Any) -> dict[str, Any]:
    response = await hub.client.post("/sla/billing/sync", json=body, headers=OPERATOR)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def sync(hub: Hub, **body: Any) -> dict[str, int]:
    """The run's counts; v1.1 added `billing_blocked`, null while the coordinator takes records."""
    result = await sync_answer(hub, **body)
    assert result.pop("billing_blocked") is None
    return result


async def ledger(hub: Hub, **params: Any) -> list[dict[str, Any]]:
    response = await hub.client.get("/sla/billing/records", params={"limit": 500, **params}, headers=OPERATOR)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    assert int(response.headers["X-Total-Count"]) == len(rows)
    return rows


async def usage(hub: Hub, **params: Any) -> dict[str, Any]:
    response = await hub.client.get("/sla/billing/usage", params=params, headers=OPERATOR)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def metric(hub: Hub, name: str) -> float:
    text = (await hub.client.get("/v1/metrics")).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /v1/metrics"
    return float(match.group(1))


def assert_stub_holds_ledger_once(stub: CoordinatorStubServer, rows: list[dict[str, Any]]) -> None:
    """Each ledger line is at the stub under its key exactly once, with the same quantity."""
    state = stub.snapshot()
    at_stub = state["quantity_by_key"]
    assert state["events"] == state["distinct_keys"] == len(rows)
    assert set(at_stub) == {row["idempotency_key"] for row in rows}
    assert sum(Decimal(q) for q in at_stub.values()) == sum(Decimal(row["quantity"]) for row in rows)
    for row in rows:
        assert Decimal(at_stub[row["idempotency_key"]]) == Decimal(row["quantity"])


# --- recording ---------------------------------------------------------------------------------------


async def test_a_manual_record_is_a_pending_ledger_line(hub: Hub) -> None:
    line = await record(hub, quantity="2.5", job_id="job-9", metadata={"note": "credit", "n": 3, "ok": True})

    assert set(line) == {
        "id", "idempotency_key", "tenant_id", "miner_id", "resource_type", "unit", "quantity", "unit_price",
        "amount", "currency", "usage_start", "usage_end", "job_id", "metadata", "status", "created_at",
    }  # fmt: skip
    assert line["idempotency_key"].startswith("manual:")
    assert (line["tenant_id"], line["miner_id"], line["job_id"]) == ("acme", None, "job-9")
    assert (line["resource_type"], line["unit"], line["currency"]) == ("gpu_hours", "hours", "USD")
    assert (line["quantity"], line["unit_price"], line["amount"]) == ("2.5", "0.50", "1.25000000")
    assert line["metadata"] == {"note": "credit", "n": 3, "ok": True}
    assert line["status"] == "pending"
    assert line["usage_start"] == line["usage_end"]
    assert line["created_at"].endswith("Z") and line["usage_end"].endswith("Z")
    assert [row["id"] for row in await ledger(hub)] == [line["id"]]


async def test_an_explicit_price_wins_and_an_unpriced_type_needs_one(hub: Hub) -> None:
    line = await record(hub, resource="tpu_hours", quantity="3", unit_price="1.10")
    assert (line["unit"], line["unit_price"], line["amount"]) == ("units", "1.10", "3.30000000")

    response = await hub.client.post(
        "/sla/billing/usage/record",
        json={"tenant_id": "acme", "resource_type": "tpu_hour", "quantity": "1"},
        headers=OPERATOR,
    )
    assert response.status_code == 400
    assert "tpu_hour" in response.json()["detail"]


async def test_an_idempotency_key_header_records_once(hub: Hub) -> None:
    body = {"tenant_id": "acme", "resource_type": "api_calls", "quantity": "100"}
    headers = {**OPERATOR, "Idempotency-Key": "op-2026-03-01-1"}
    first = await hub.client.post("/sla/billing/usage/record", json=body, headers=headers)
    again = await hub.client.post("/sla/billing/usage/record", json=body, headers=headers)
    other = await hub.client.post(
        "/sla/billing/usage/record", json={**body, "quantity": "101"}, headers=headers
    )

    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert first.json()["idempotency_key"] == "manual:op-2026-03-01-1"
    assert again.json()["id"] == first.json()["id"]
    assert "op-2026-03-01-1" in other.json()["detail"]
    assert len(await ledger(hub)) == 1


# --- sync ----------------------------------------------------------------------------------------------


async def test_a_sync_delivers_each_line_once_and_a_second_sends_nothing(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    for quantity in ("1.5", "0.25", "7"):
        await record(hub, quantity=quantity)
    await record(hub, tenant="globex", resource="api_calls", quantity="1200")

    assert await sync(hub) == {
        "records_sent": 4,
        "records_failed": 0,
        "records_pending": 0,
        "records_rejected": 0,
    }
    rows = await ledger(hub)
    assert {row["status"] for row in rows} == {"synced"}
    assert_stub_holds_ledger_once(stub, rows)
    [event] = [e for e in stub.events() if e["body"]["tenant_id"] == "globex"]
    assert event["body"]["quantity"] == "1200" and event["body"]["total_amount"] == "0.12000000"
    requests = stub.snapshot()["requests"]

    assert await sync(hub) == {
        "records_sent": 0,
        "records_failed": 0,
        "records_pending": 0,
        "records_rejected": 0,
    }
    assert stub.snapshot()["requests"] == requests
    assert await metric(hub, "poolhub_billing_records_pending") == 0


async def test_an_outage_leaves_lines_pending_and_recovery_delivers_them_once(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    for quantity in ("1", "2", "3"):
        await record(hub, quantity=quantity)
    failures_before = await metric(hub, "poolhub_billing_sync_failures_total")
    stub.control(fail_status=503)

    answer = await sync(hub)

    assert answer == {"records_sent": 0, "records_failed": 3, "records_pending": 3, "records_rejected": 0}
    rows = await ledger(hub)
    assert {row["status"] for row in rows} == {"pending"}
    assert all(row["attempts"] == 1 and "503" in row["last_error"] for row in rows)
    assert all(row["next_attempt_at"] > row["created_at"] for row in rows)
    assert stub.snapshot()["events"] == 0
    assert await metric(hub, "poolhub_billing_sync_failures_total") == failures_before + 3
    assert await metric(hub, "poolhub_billing_records_pending") == 3
    [total] = (await usage(hub))["totals"]
    assert (total["pending_quantity"], total["synced_quantity"]) == ("6", "0")

    stub.control(fail_status=None)
    assert (await sync(hub))["records_sent"] == 3  # an operator's sync ignores the backoff

    rows = await ledger(hub)
    assert {row["status"] for row in rows} == {"synced"}
    assert_stub_holds_ledger_once(stub, rows)
    assert stub.snapshot()["duplicates"] == 0


async def test_a_hanging_coordinator_times_out_and_nothing_is_lost(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    await record(hub, quantity="4")
    await record(hub, quantity="5")
    stub.control(fail_mode="timeout", hang_seconds=2)

    answer = await sync(hub)

    assert (answer["records_failed"], answer["records_pending"]) == (2, 2)
    assert all("timed out" in row["last_error"] for row in await ledger(hub))

    stub.control(fail_mode=None)
    assert (await sync(hub))["records_sent"] == 2
    assert_stub_holds_ledger_once(stub, await ledger(hub))


async def test_a_send_that_landed_after_the_timeout_counts_once(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    await record(hub, quantity="8")
    stub.control(delay_ms=int(CLIENT_TIMEOUT_S * 1000) + 300)
    assert (await sync(hub))["records_failed"] == 1
    for _ in range(100):  # the stub finishes the request the hub stopped waiting for
        if stub.snapshot()["events"]:
            break
        await asyncio.sleep(0.02)
    stub.control(delay_ms=0)

    assert (await sync(hub))["records_sent"] == 1

    state = stub.snapshot()
    assert (state["events"], state["duplicates"]) == (1, 1)
    assert_stub_holds_ledger_once(stub, await ledger(hub))


async def test_a_rejection_is_kept_with_its_reason_shown_and_not_retried(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    await record(hub, resource="tpu_hours", quantity="2", unit_price="1.00")
    await record(hub, quantity="1")
    stub.control(reject_resource_types=["tpu_hours"])

    answer = await sync(hub)

    assert answer == {"records_sent": 1, "records_failed": 0, "records_pending": 0, "records_rejected": 1}
    [rejected] = await ledger(hub, status="rejected")
    assert rejected["resource_type"] == "tpu_hours"
    assert "422" in rejected["last_error"] and "not billable" in rejected["last_error"]
    totals = {t["resource_type"]: t for t in (await usage(hub))["totals"]}
    assert totals["tpu_hours"]["rejected_quantity"] == "2"
    assert totals["tpu_hours"]["quantity"] == "2"
    assert totals["gpu_hours"]["synced_quantity"] == "1"

    stub.control(reject_resource_types=[])
    requests = stub.snapshot()["requests"]
    assert (await sync(hub))["records_sent"] == 0
    assert stub.snapshot()["requests"] == requests
    assert (await ledger(hub, status="rejected"))[0]["id"] == rejected["id"]


async def test_a_sync_can_be_limited_to_recent_usage(hub: Hub, stub: CoordinatorStubServer) -> None:
    await record(hub, quantity="1")
    answer = await sync(hub, hours_back=1)
    assert answer["records_sent"] == 1
    answer = await sync(hub, miner_id="m-none")
    assert answer == {"records_sent": 0, "records_failed": 0, "records_pending": 0, "records_rejected": 0}


async def test_a_sync_needs_no_body(hub: Hub) -> None:
    await record(hub)
    response = await hub.client.post("/sla/billing/sync", headers=OPERATOR)
    assert response.status_code == 200, response.text
    assert response.json()["records_sent"] == 1


async def test_the_scheduled_sync_runs_once_per_tick_and_respects_backoff(
    clean_db: str, stub: CoordinatorStubServer
) -> None:
    settings = billing_settings(clean_db, stub)
    [job] = [job for job in periodic_jobs(settings) if job.name == BILLING_SYNC_JOB]
    assert job.interval_sec == settings.billing_sync_interval_hours * 3600
    async with (
        hub_with_overrides(settings, ShortTimeoutCoordinator()) as first,
        hub_with_overrides(settings, ShortTimeoutCoordinator()) as second,
    ):
        await record(first, quantity="3")
        tick = tick_of(datetime.now(UTC), job.interval_sec)
        schedulers = [first.app.state.scheduler, second.app.state.scheduler]

        ran = await asyncio.gather(*(s.run_tick(job, tick) for s in schedulers))

        assert sorted(ran) == [False, True]
        assert stub.snapshot()["requests"] == 1
        assert await asyncio.gather(*(s.run_tick(job, tick) for s in schedulers)) == [False, False]
        assert stub.snapshot()["requests"] == 1

        # A line that failed waits out its backoff in the scheduler (the next tick comes too soon).
        await record(first, quantity="4")
        stub.control(fail_status=503)
        assert await first.app.state.scheduler.run_tick(job, tick + timedelta(seconds=job.interval_sec))
        stub.control(fail_status=None)
        requests = stub.snapshot()["requests"]
        assert await first.app.state.scheduler.run_tick(job, tick + timedelta(seconds=2 * job.interval_sec))
        assert stub.snapshot()["requests"] == requests
        assert stub.snapshot()["events"] == 1


async def test_a_completed_job_is_billed_once_and_delivered(hub: Hub, stub: CoordinatorStubServer) -> None:
    await register(hub.client, "m-1", gpu_count=2)
    job = {"job_id": "job-1", "tenant_id": "acme", "requirements": {}, "top_k": 1}
    matched = await hub.client.post("/v1/match", json=job, headers=bearer(COORDINATOR))
    assert matched.status_code == 200, matched.text
    feedback = {"job_id": "job-1", "miner_id": "m-1", "outcome": "completed", "duration_ms": 1_800_000}
    for expected in (201, 200):  # the replay changes nothing
        answer = await hub.client.post("/v1/feedback", json=feedback, headers=bearer(COORDINATOR))
        assert answer.status_code == expected, answer.text

    lines = {row["resource_type"]: row for row in await ledger(hub)}
    assert set(lines) == {"compute_hours", "gpu_hours"}
    assert (lines["compute_hours"]["quantity"], lines["compute_hours"]["amount"]) == ("0.5", "0.15000000")
    assert (lines["gpu_hours"]["quantity"], lines["gpu_hours"]["amount"]) == ("1", "0.50000000")
    assert {row["tenant_id"] for row in lines.values()} == {"acme"}
    report = {t["resource_type"]: t for t in (await usage(hub, miner_id="m-1"))["totals"]}
    assert report["gpu_hours"]["pending_quantity"] == "1"

    assert (await sync(hub))["records_sent"] == 2
    assert_stub_holds_ledger_once(stub, await ledger(hub))
    assert set(stub.snapshot()["quantity_by_key"]) == {
        "job:job-1:m-1:compute_hours",
        "job:job-1:m-1:gpu_hours",
    }


# --- api_calls ---------------------------------------------------------------------------------------


async def add_matches(url: str, rows: list[tuple[str | None, datetime]]) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(
            insert(MatchRecordRow),
            [
                {
                    "job_id": f"job-{number}",
                    "tenant_id": tenant,
                    "requested_at": at,
                    "request": {},
                    "candidates": [],
                    "explain": "",
                    "considered": 0,
                    "returned": 0,
                }
                for number, (tenant, at) in enumerate(rows)
            ],
        )
    await engine.dispose()


async def test_api_calls_are_derived_per_tenant_and_closed_hour_once(
    hub: Hub, clean_db: str, stub: CoordinatorStubServer
) -> None:
    now = datetime.now(UTC)
    three_ago = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    await add_matches(
        clean_db,
        [
            ("acme", three_ago + timedelta(minutes=1)),
            ("acme", three_ago + timedelta(minutes=59, seconds=59)),
            (None, three_ago + timedelta(minutes=30)),
            ("acme", three_ago + timedelta(hours=1, minutes=10)),
            ("globex", now),  # the open hour: billed once it has closed
        ],
    )

    assert (await sync(hub))["records_sent"] == 3
    lines = {row["idempotency_key"]: row for row in await ledger(hub)}
    hour = f"{three_ago:%Y-%m-%dT%H}"
    next_hour = f"{three_ago + timedelta(hours=1):%Y-%m-%dT%H}"
    assert set(lines) == {
        f"api_calls:acme:{hour}",
        f"api_calls:unattributed:{hour}",
        f"api_calls:acme:{next_hour}",
    }
    first = lines[f"api_calls:acme:{hour}"]
    assert (first["quantity"], first["unit"], first["amount"]) == ("2", "calls", "0.00020000")
    assert first["usage_start"] == three_ago.strftime("%Y-%m-%dT%H:00:00Z")
    assert_stub_holds_ledger_once(stub, list(lines.values()))

    assert (await sync(hub))["records_sent"] == 0
    assert len(await ledger(hub)) == 3


# --- reports and invoices ------------------------------------------------------------------------------


async def test_the_usage_report_shape_with_and_without_the_coordinator(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    await record(hub, quantity="1.5")
    await record(hub, tenant="globex", resource="compute_hours", quantity="2")
    await sync(hub)
    await record(hub, quantity="0.5")

    report = await usage(hub, hours=24)

    assert set(report) == {"period", "totals", "coordinator"}
    start = datetime.fromisoformat(report["period"]["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(report["period"]["end"].replace("Z", "+00:00"))
    assert end - start == timedelta(hours=24)
    acme, globex = report["totals"]
    assert set(acme) == {
        "tenant_id", "miner_id", "resource_type", "unit", "quantity", "amount", "currency",
        "synced_quantity", "pending_quantity", "rejected_quantity",
    }  # fmt: skip
    assert (acme["tenant_id"], acme["miner_id"], acme["resource_type"], acme["unit"]) == (
        "acme", None, "gpu_hours", "hours",
    )  # fmt: skip
    assert (acme["quantity"], acme["amount"], acme["currency"]) == ("2", "1.00000000", "USD")
    assert (acme["synced_quantity"], acme["pending_quantity"], acme["rejected_quantity"]) == (
        "1.5",
        "0.5",
        "0",
    )
    assert (globex["tenant_id"], globex["amount"]) == ("globex", "0.60000000")
    assert report["coordinator"]["total_records"] == 2

    only_acme = await usage(hub, tenant_id="acme", hours=1)
    assert [t["tenant_id"] for t in only_acme["totals"]] == ["acme"]
    assert only_acme["coordinator"]["tenant_id"] == "acme"

    stub.control(fail_status=503)
    down = await usage(hub)
    assert down["coordinator"] is None
    assert len(down["totals"]) == 2


async def test_sums_stay_exact_beyond_64_bits(hub: Hub) -> None:
    for _ in range(3):  # 3 × 9,000,000 × 10^12 overflows a 64-bit SUM
        await record(hub, resource="tpu_hours", quantity="9000000.000000000001", unit_price="0")
    [total] = (await usage(hub))["totals"]
    assert total["quantity"] == "27000000.000000000003"
    response = await hub.client.post(
        "/sla/billing/usage/record",
        json={"tenant_id": "acme", "resource_type": "tpu_hours", "quantity": "9300000", "unit_price": "0"},
        headers=OPERATOR,
    )
    assert response.status_code == 400
    assert "too large" in response.json()["detail"]


async def test_an_invoice_is_the_coordinators_answer(hub: Hub, stub: CoordinatorStubServer) -> None:
    await record(hub, quantity="2")
    await sync(hub)
    now = datetime.now(UTC)
    body = {
        "tenant_id": "acme",
        "period_start": (now - timedelta(days=1)).isoformat(),
        "period_end": (now + timedelta(minutes=1)).isoformat(),
    }

    response = await hub.client.post("/sla/billing/invoice/generate", json=body, headers=OPERATOR)

    assert response.status_code == 200, response.text
    invoice = response.json()
    assert invoice["status"] == "issued" and invoice["tenant_id"] == "acme"
    assert [(i["resource_type"], i["quantity"]) for i in invoice["line_items"]] == [("gpu_hours", "2")]
    assert invoice["total_amount"] == "1.00000000"


async def test_an_invoice_the_coordinator_cannot_make_is_a_502_with_the_reason(
    hub: Hub, stub: CoordinatorStubServer
) -> None:
    now = datetime.now(UTC)
    body = {
        "tenant_id": "acme",
        "period_start": (now - timedelta(days=1)).isoformat(),
        "period_end": now.isoformat(),
    }
    stub.control(fail_status=503)

    response = await hub.client.post("/sla/billing/invoice/generate", json=body, headers=OPERATOR)

    assert response.status_code == 502
    detail = response.json()["detail"]
    assert "could not generate the invoice" in detail and "503" in detail

    stub.control(fail_mode="timeout", hang_seconds=2)
    response = await hub.client.post("/sla/billing/invoice/generate", json=body, headers=OPERATOR)
    assert response.status_code == 502
    assert "timed out" in response.json()["detail"]


# --- bad input and roles -------------------------------------------------------------------------------


def body(**overrides: object) -> dict[str, object]:
    return {"tenant_id": "acme", "resource_type": "gpu_hours", "quantity": "1", **overrides}


RECORD_CASES: list[tuple[str, object]] = [
    ("not json", b"{nope"),
    ("missing quantity", {"tenant_id": "acme", "resource_type": "gpu_hours"}),
    # v1.1: decimals may be JSON numbers (1.5 is valid); a boolean is not a number.
    ("quantity a boolean", body(quantity=True)),
    ("quantity negative", body(quantity="-1")),
    ("quantity exponent past the bound", body(quantity="1e7")),
    ("quantity NaN", body(quantity="NaN")),
    ("quantity 13 places", body(quantity="0.0000000000001")),
    ("unit_price negative", body(unit_price="-0.5")),
    ("unit_price a negative number", body(unit_price=-0.5)),
    ("tenant with a slash", body(tenant_id="ac/me")),
    ("tenant too long", body(tenant_id="t" * 65)),
    ("resource upper case", body(resource_type="GPU_HOURS")),
    ("resource too long", body(resource_type="g" * 33)),
    ("job_id with a space", body(job_id="a b")),
    ("metadata a list", body(metadata=[1])),
    ("metadata nested", body(metadata={"a": {"b": 1}})),
    ("metadata too many keys", body(metadata={f"k{i}": i for i in range(33)})),
    ("metadata value too long", body(metadata={"a": "x" * 257})),
    ("metadata huge int", body(metadata={"a": 10**30})),
]


@pytest.mark.parametrize(("case", "body"), RECORD_CASES, ids=[case for case, _ in RECORD_CASES])
async def test_a_bad_record_is_refused_and_records_nothing(hub: Hub, case: str, body: object) -> None:
    content = body if isinstance(body, bytes) else httpx.Request("POST", "/", json=body).content
    response = await hub.client.post(
        "/sla/billing/usage/record",
        content=content,
        headers={**OPERATOR, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, (case, response.text)
    assert response.json()["detail"]
    assert await ledger(hub) == []


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/sla/billing/usage", {"params": {"hours": 0}}),
        ("GET", "/sla/billing/usage", {"params": {"hours": 721}}),
        ("GET", "/sla/billing/usage", {"params": {"tenant_id": "a b"}}),
        ("GET", "/sla/billing/records", {"params": {"status": "lost"}}),
        ("GET", "/sla/billing/records", {"params": {"limit": 501}}),
        ("POST", "/sla/billing/sync", {"json": {"hours_back": 0}}),
        ("POST", "/sla/billing/sync", {"json": {"hours_back": 721}}),
        ("POST", "/sla/billing/sync", {"json": {"miner_id": "bad id"}}),
        ("POST", "/sla/billing/invoice/generate", {"json": {"tenant_id": "acme"}}),
        (
            "POST",
            "/sla/billing/invoice/generate",
            {
                "json": {
                    "tenant_id": "acme",
                    "period_start": "2026-03-01T00:00:00",
                    "period_end": "2026-03-02T00:00:00",
                }
            },
        ),
        (
            "POST",
            "/sla/billing/invoice/generate",
            {
                "json": {
                    "tenant_id": "acme",
                    "period_start": "2026-03-02T00:00:00Z",
                    "period_end": "2026-03-01T00:00:00Z",
                }
            },
        ),
        (
            "POST",
            "/sla/billing/invoice/generate",
            {
                "json": {
                    "tenant_id": "acme",
                    "period_start": "2026-03-02T00:00:00Z",
                    "period_end": "2026-03-02T01:00:00+01:00",
                }
            },
        ),
    ],
)
async def test_bad_queries_and_bodies_are_400(
    hub: Hub, stub: CoordinatorStubServer, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = await hub.client.request(method, path, headers=OPERATOR, **kwargs)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert stub.snapshot()["requests"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sla/billing/usage"),
        ("POST", "/sla/billing/sync"),
        ("POST", "/sla/billing/usage/record"),
        ("POST", "/sla/billing/invoice/generate"),
        ("GET", "/sla/billing/records"),
    ],
)
async def test_billing_routes_are_for_operators(hub: Hub, method: str, path: str) -> None:
    assert (await hub.client.request(method, path)).status_code == 401
    assert (await hub.client.request(method, path, headers=bearer("nope"))).status_code == 401
    assert (await hub.client.request(method, path, headers=bearer(COORDINATOR))).status_code == 403


# --- the ledger adapter ----------------------------------------------------------------------------------


async def test_the_ledger_adds_each_key_once(clean_db: str) -> None:
    prices = UnitPrices.parse(DEFAULT_UNIT_PRICES)
    job = usage_from_completed_job(
        job_id="job-1",
        miner_id="m-1",
        tenant_id=None,
        match_tenant_id="acme",
        duration_ms=1_800_000.0,
        latency_ms=None,
        gpu_count=2,
        completed_at=datetime.now(UTC),
        prices=prices,
    )
    engine = create_async_engine(clean_db)
    try:
        async with engine.connect() as connection:
            from sqlalchemy.ext.asyncio import AsyncSession

            async with AsyncSession(bind=connection) as session:
                ledger_ = SqlUsageLedger(session)
                assert await ledger_.add(job) == 2
                assert await ledger_.add(job) == 0  # a replayed feedback
                assert await ledger_.add([*job, *job]) == 0
                await session.commit()
                stored = await ledger_.get_by_key("job:job-1:m-1:gpu_hours")
                assert stored is not None
                assert stored.record == next(r for r in job if r.resource_type == "gpu_hours")
            count = await connection.scalar(select(func.count()).select_from(UsageRecordRow))
        assert count == 2
    finally:
        await engine.dispose()
