"""CoordinatorBillingClient against the coordinator stub over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from poolhub.adapters.billing import CoordinatorBillingClient, make_http_client, usage_body
from poolhub.domain.billing import (
    DEFAULT_UNIT_PRICES,
    BillingMisconfiguredError,
    BillingPermanentError,
    BillingRetryableError,
    UnitPrices,
    UsageRecord,
    manual_usage,
    usage_from_completed_job,
)
from poolhub.domain.errors import BillingRejectedError, BillingUnavailableError
from tests.integration.coordinator_stub_server import CoordinatorStubServer

API_KEY = "stub-secret-key-123"
CLIENT_TIMEOUT_S = 0.5
PRICES = UnitPrices.parse(DEFAULT_UNIT_PRICES)


@pytest.fixture(scope="module")
def stub() -> Iterator[CoordinatorStubServer]:
    with CoordinatorStubServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def clean_stub(stub: CoordinatorStubServer) -> None:
    stub.reset()


@pytest.fixture
async def http(stub: CoordinatorStubServer) -> AsyncIterator[httpx.AsyncClient]:
    client = make_http_client(stub.base_url, API_KEY, timeout_s=CLIENT_TIMEOUT_S)
    yield client
    await client.aclose()


@pytest.fixture
def gateway(http: httpx.AsyncClient) -> CoordinatorBillingClient:
    return CoordinatorBillingClient(http)


def completed_job(job_id: str = "job-1", tenant: str = "acme") -> tuple[UsageRecord, ...]:
    return usage_from_completed_job(
        job_id=job_id,
        miner_id="m-7",
        tenant_id=tenant,
        match_tenant_id=None,
        duration_ms=1_800_000.0,
        latency_ms=None,
        gpu_count=2,
        completed_at=datetime.now(UTC) - timedelta(minutes=5),
        prices=PRICES,
    )


def compute_record(**kwargs: str) -> UsageRecord:
    return next(r for r in completed_job(**kwargs) if r.resource_type == "compute_hours")


async def test_usage_is_accepted_with_contract_body(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    record = compute_record()
    await gateway.send_usage(record)
    [event] = stub.events()
    assert event["idempotency_key"] == "job:job-1:m-7:compute_hours"
    body = event["body"]
    assert body["event_type"] == "usage"
    assert body["tenant_id"] == "acme"
    assert body["job_id"] == "job-1"
    assert (body["quantity"], body["unit"], body["unit_price"], body["total_amount"]) == (
        "0.5",
        "hours",
        "0.30",
        "0.15000000",
    )
    assert body["currency"] == "USD"
    assert body["usage_end"].endswith("Z")
    assert body["usage_end"] == record.usage_end.isoformat().replace("+00:00", "Z")
    assert body["metadata"] == {"miner_id": "m-7", "gpu_count": 2, "basis": "duration_ms"}


async def test_same_key_twice_counts_one_event(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    record = compute_record()
    await gateway.send_usage(record)
    await gateway.send_usage(record)
    state = stub.snapshot()
    assert state["requests"] == 2
    assert state["events"] == state["distinct_keys"] == 1
    assert state["duplicates"] == 1
    assert state["quantity_by_key"] == {record.idempotency_key: "0.5"}


async def test_requests_carry_bearer_and_idempotency_key(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    record = compute_record()
    await gateway.send_usage(record)
    last = stub.snapshot()["last_request"]
    assert last["authorization_scheme"] == "Bearer"
    assert last["authorized"] is True
    assert last["idempotency_key"] == record.idempotency_key
    assert last["content_type"] == "application/json"


async def test_wrong_key_is_rejected_for_good(stub: CoordinatorStubServer) -> None:
    async with make_http_client(stub.base_url, "not-the-key", timeout_s=CLIENT_TIMEOUT_S) as http:
        with pytest.raises(BillingPermanentError) as caught:
            await CoordinatorBillingClient(http).send_usage(compute_record())
    assert caught.value.status_code == 401
    assert isinstance(caught.value, BillingMisconfiguredError)  # v1.1: a sync run stops on it
    assert stub.snapshot()["events"] == 0


async def test_503_is_unavailable(gateway: CoordinatorBillingClient, stub: CoordinatorStubServer) -> None:
    stub.control(fail_status=503)
    with pytest.raises(BillingUnavailableError) as caught:
        await gateway.send_usage(compute_record())
    assert isinstance(caught.value, BillingRetryableError)
    assert caught.value.status_code == 503
    assert "503" in caught.value.message
    assert stub.snapshot()["events"] == 0


@pytest.mark.parametrize("status", [408, 429, 500, 502])
async def test_other_retryable_statuses_are_unavailable(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer, status: int
) -> None:
    stub.control(fail_mode="status", fail_status=status)
    with pytest.raises(BillingRetryableError) as caught:
        await gateway.send_usage(compute_record())
    assert caught.value.status_code == status


async def test_slow_coordinator_times_out_as_unavailable(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    stub.control(delay_ms=int(CLIENT_TIMEOUT_S * 1000) + 700)
    with pytest.raises(BillingUnavailableError) as caught:
        await gateway.send_usage(compute_record())
    assert isinstance(caught.value, BillingRetryableError)
    assert caught.value.status_code is None
    assert "timed out" in caught.value.message


async def test_retry_after_a_timeout_that_did_land_counts_once(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    record = compute_record()
    stub.control(delay_ms=int(CLIENT_TIMEOUT_S * 1000) + 300)
    with pytest.raises(BillingUnavailableError):
        await gateway.send_usage(record)
    for _ in range(100):  # the coordinator finishes the request we stopped waiting for
        if stub.snapshot()["events"]:
            break
        await asyncio.sleep(0.02)
    stub.control(delay_ms=0)

    await gateway.send_usage(record)

    state = stub.snapshot()
    assert (state["events"], state["duplicates"]) == (1, 1)


async def test_hanging_coordinator_times_out_as_unavailable(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    stub.control(fail_mode="timeout", hang_seconds=2)
    with pytest.raises(BillingRetryableError, match="timed out"):
        await gateway.metrics(None, 24)


async def test_unreachable_coordinator_is_unavailable() -> None:
    with CoordinatorStubServer() as gone:
        url = gone.base_url
    async with make_http_client(url, API_KEY, timeout_s=CLIENT_TIMEOUT_S) as http:
        with pytest.raises(BillingRetryableError) as caught:
            await CoordinatorBillingClient(http).send_usage(compute_record())
    assert caught.value.status_code is None


async def test_rejection_carries_status_and_reason(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    stub.control(reject_resource_types=["compute_hours"])
    with pytest.raises(BillingRejectedError) as caught:
        await gateway.send_usage(compute_record())
    error = caught.value
    assert isinstance(error, BillingPermanentError)
    assert error.status_code == 422
    assert "not billable" in error.reason
    assert "422" in error.message
    assert "not billable" in error.message
    assert stub.snapshot()["events"] == 0


async def test_other_resource_types_still_pass_a_rejection(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    stub.control(reject_resource_types=["compute_hours"])
    gpu = next(r for r in completed_job() if r.resource_type == "gpu_hours")
    await gateway.send_usage(gpu)
    assert stub.snapshot()["events"] == 1


async def test_each_failure_is_logged_once_without_the_key(
    gateway: CoordinatorBillingClient, stub: CoordinatorStubServer
) -> None:
    stub.control(fail_status=503)
    with capture_logs() as logs, pytest.raises(BillingUnavailableError):
        await gateway.send_usage(compute_record())
    failures = [entry for entry in logs if entry["event"] == "coordinator_billing_failed"]
    assert len(failures) == 1
    assert failures[0]["status_code"] == 503
    assert failures[0]["idempotency_key"] == "job:job-1:m-7:compute_hours"
    assert API_KEY not in repr(logs)


async def test_metrics_round_trip(gateway: CoordinatorBillingClient) -> None:
    for record in (
        *completed_job("job-1", "acme"),
        *completed_job("job-2", "acme"),
        *completed_job("job-3", "globex"),
    ):
        await gateway.send_usage(record)

    everyone = await gateway.metrics(None, 24)
    assert everyone["total_records"] == 6
    assert everyone["tenant_id"] is None

    acme: dict[str, Any] = dict(await gateway.metrics("acme", 24))
    [tenant] = acme["tenants"]
    assert tenant["tenant_id"] == "acme"
    assert tenant["records"] == 4
    assert tenant["resources"]["compute_hours"]["quantity"] == "1.0"
    assert tenant["resources"]["gpu_hours"]["quantity"] == "2.0"
    assert Decimal(tenant["total_amount"]) == Decimal("0.3") + Decimal("1.0")


async def test_metrics_hours_window_excludes_older_usage(gateway: CoordinatorBillingClient) -> None:
    old = manual_usage(
        tenant_id="acme",
        resource_type="gpu_hours",
        quantity=Decimal(1),
        unit_price=None,
        recorded_at=datetime.now(UTC) - timedelta(hours=5),
        prices=PRICES,
        request_id="old",
    )
    await gateway.send_usage(old)
    assert (await gateway.metrics("acme", 1))["total_records"] == 0
    assert (await gateway.metrics("acme", 6))["total_records"] == 1


async def test_invoice_round_trip(gateway: CoordinatorBillingClient) -> None:
    for record in (*completed_job("job-1"), *completed_job("job-2"), *completed_job("job-3", "globex")):
        await gateway.send_usage(record)
    now = datetime.now(UTC)

    invoice: dict[str, Any] = dict(
        await gateway.invoice("acme", now - timedelta(days=1), now + timedelta(minutes=1))
    )

    assert invoice["status"] == "issued"
    assert invoice["tenant_id"] == "acme"
    assert str(invoice["invoice_id"]).startswith("inv-")
    assert invoice["currency"] == "USD"
    assert str(invoice["period_start"]).endswith("Z")
    lines = {line["resource_type"]: line for line in invoice["line_items"]}
    assert lines["compute_hours"]["quantity"] == "1.0"
    assert lines["gpu_hours"]["amount"] == "1.00000000"
    assert Decimal(str(invoice["total_amount"])) == Decimal("1.3")


async def test_invoice_for_an_empty_period_is_empty(gateway: CoordinatorBillingClient) -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    invoice = await gateway.invoice("acme", start, start + timedelta(days=30))
    assert invoice["line_items"] == []
    assert invoice["total_amount"] == "0"


async def test_invalid_invoice_period_is_rejected(gateway: CoordinatorBillingClient) -> None:
    now = datetime.now(UTC)
    with pytest.raises(BillingPermanentError, match="period_end") as caught:
        await gateway.invoice("acme", now, now - timedelta(days=1))
    assert caught.value.status_code == 400


async def test_stub_refuses_usage_without_idempotency_key(
    http: httpx.AsyncClient, stub: CoordinatorStubServer
) -> None:
    response = await http.post("/api/billing/usage", json=usage_body(compute_record()))
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    assert stub.snapshot()["events"] == 0


async def test_stub_refuses_decimals_sent_as_numbers(http: httpx.AsyncClient) -> None:
    body = {**usage_body(compute_record()), "quantity": 0.5}
    response = await http.post("/api/billing/usage", json=body, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 400
    assert response.json()["extra"][0]["key"] == "quantity"
