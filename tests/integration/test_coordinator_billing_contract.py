"""docs/coordinator-billing-api.yaml is true: Pool Hub's requests fit it, and the coordinator stub (its
reference implementation) answers every documented case with a documented status and body."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from poolhub.adapters.billing import usage_body
from poolhub.domain.billing import UnitPrices
from poolhub.domain.billing.usage import manual_usage, usage_from_completed_job
from tests.integration.coordinator_stub_server import CoordinatorStubServer

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "coordinator-billing-api.yaml"
DOC_URI = "urn:poolhub:coordinator-billing-api"
API_KEY = "contract-api-key"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOC_PATH.read_text())
    return loaded


@pytest.fixture(scope="module")
def registry(doc: dict[str, Any]) -> Registry:
    return Registry().with_resource(DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012))


@pytest.fixture(scope="module")
def stub() -> Iterator[CoordinatorStubServer]:
    with CoordinatorStubServer(api_key=API_KEY) as server:
        yield server


def _errors(registry: Registry, pointer: str, instance: object) -> list[str]:
    validator = Draft202012Validator({"$ref": f"{DOC_URI}#{pointer}"}, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def _response_spec(doc: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    responses = doc["paths"][path][method]["responses"]
    spec = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    assert spec is not None, f"{method.upper()} {path} answered {status}, which the document does not list"
    if "$ref" in spec:
        spec = doc["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    return dict(spec)


def _check_answer(
    doc: dict[str, Any], registry: Registry, path: str, method: str, response: httpx.Response
) -> None:
    spec = _response_spec(doc, path, method, response.status_code)
    schema = spec["content"]["application/json"]["schema"]
    pointer = schema["$ref"].removeprefix("#")
    assert _errors(registry, pointer, response.json()) == [], (path, response.status_code, response.text)


def _bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _example(doc: dict[str, Any], path: str) -> dict[str, Any]:
    example: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"][
        "example"
    ]
    return example


def test_the_document_names_the_three_routes_the_key_and_the_retry_rules(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {"/api/billing/usage", "/api/billing/metrics", "/api/billing/invoice"}
    usage = doc["paths"]["/api/billing/usage"]["post"]
    header = next(p for p in usage["parameters"] if p["name"] == "Idempotency-Key")
    assert (header["in"], header["required"]) == ("header", True)
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    refs = {code: spec.get("$ref", "").rsplit("/", 1)[-1] for code, spec in usage["responses"].items()}
    assert {refs[c] for c in ("400", "409", "422")} == {"RecordRejected"}
    assert {refs[c] for c in ("401", "403", "404")} == {"Misconfigured"}
    assert {refs[c] for c in ("408", "429", "5XX")} == {"RetryLater"}
    description = doc["info"]["description"]
    for rule in ("Idempotency-Key", "3xx", "30 s × 2^(attempts − 1)", "never sent again automatically"):
        assert rule in description


def test_every_usage_body_pool_hub_sends_fits_the_document(registry: Registry) -> None:
    prices = UnitPrices.parse("gpu_hours:0.50,compute_hours:0.30,api_calls:0.0001")
    now = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    records = [
        *usage_from_completed_job(
            job_id="job-1",
            miner_id="m-7",
            tenant_id="acme",
            match_tenant_id=None,
            duration_ms=37_800_000,
            latency_ms=None,
            gpu_count=2,
            completed_at=now,
            prices=prices,
        ),
        manual_usage(
            tenant_id="acme",
            resource_type="gpu_hours",
            quantity=Decimal("0.0000001"),
            unit_price=None,
            recorded_at=now,
            prices=prices,
            request_id="r-1",
            metadata={"ticket": "T-1"},
        ),
    ]
    for record in records:
        body = usage_body(record)
        assert _errors(registry, "/components/schemas/UsageEvent", body) == [], body
    assert usage_body(records[-1])["quantity"] == "0.0000001"  # plain notation, never 1E-7


def test_the_stub_answers_usage_as_documented(
    doc: dict[str, Any], registry: Registry, stub: CoordinatorStubServer
) -> None:
    stub.reset()
    path, url = "/api/billing/usage", f"{stub.base_url}/api/billing/usage"
    body = _example(doc, path)
    key = {"Idempotency-Key": "ledger:contract:1"}
    first = httpx.post(url, json=body, headers={**_bearer(), **key})
    again = httpx.post(url, json=body, headers={**_bearer(), **key})
    assert (first.status_code, again.status_code) == (201, 200)
    for response in (first, again):
        _check_answer(doc, registry, path, "post", response)
    assert stub.snapshot()["events"] == 1  # the repeated key was counted once

    no_key = httpx.post(url, json=body, headers=_bearer())
    wrong_bearer = httpx.post(url, json=body, headers={**_bearer("wrong"), **key})
    stub.control(reject_resource_types=["gpu_hours"])
    rejected = httpx.post(url, json=body, headers={**_bearer(), "Idempotency-Key": "ledger:contract:2"})
    stub.control(reject_resource_types=[], fail_status=503)
    unavailable = httpx.post(url, json=body, headers={**_bearer(), "Idempotency-Key": "ledger:contract:3"})
    stub.control(fail_status=429)
    throttled = httpx.post(url, json=body, headers={**_bearer(), "Idempotency-Key": "ledger:contract:3"})
    stub.control(fail_status=None)
    statuses = [r.status_code for r in (no_key, wrong_bearer, rejected, unavailable, throttled)]
    assert statuses == [400, 401, 422, 503, 429]
    for response in (no_key, wrong_bearer, rejected, unavailable, throttled):
        _check_answer(doc, registry, path, "post", response)
    assert stub.snapshot()["events"] == 1


def test_the_stub_answers_metrics_and_invoices_as_documented(
    doc: dict[str, Any], registry: Registry, stub: CoordinatorStubServer
) -> None:
    stub.reset()
    usage = _example(doc, "/api/billing/usage")
    now = datetime.now(UTC).replace(microsecond=0)
    usage = {**usage, "usage_start": now.isoformat(), "usage_end": now.isoformat()}
    headers = {**_bearer(), "Idempotency-Key": "ledger:contract:m"}
    assert httpx.post(f"{stub.base_url}/api/billing/usage", json=usage, headers=headers).status_code == 201

    metrics = httpx.get(
        f"{stub.base_url}/api/billing/metrics", params={"tenant_id": "acme", "hours": 24}, headers=_bearer()
    )
    assert metrics.status_code == 200
    _check_answer(doc, registry, "/api/billing/metrics", "get", metrics)
    assert metrics.json()["tenants"][0]["resources"]["gpu_hours"]["quantity"] == "10.5"
    unauthorised = httpx.get(f"{stub.base_url}/api/billing/metrics")
    _check_answer(doc, registry, "/api/billing/metrics", "get", unauthorised)

    path = "/api/billing/invoice"
    request = {
        "tenant_id": "acme",
        "period_start": "2026-01-01T00:00:00Z",
        "period_end": "2100-01-01T00:00:00Z",
    }
    assert _errors(registry, "/components/schemas/InvoiceRequest", request) == []
    invoice = httpx.post(f"{stub.base_url}{path}", json=request, headers=_bearer())
    assert invoice.status_code == 201
    _check_answer(doc, registry, path, "post", invoice)
    assert invoice.json()["total_amount"] == "5.25"
    backwards = {**request, "period_end": request["period_start"]}
    bad = httpx.post(f"{stub.base_url}{path}", json=backwards, headers=_bearer())
    assert bad.status_code == 400
    _check_answer(doc, registry, path, "post", bad)


def test_an_undocumented_answer_would_be_caught(doc: dict[str, Any], registry: Registry) -> None:
    # The checker itself: a body missing `detail` or a status the document does not list both fail.
    response = httpx.Response(422, json={"status_code": 422})
    with pytest.raises(AssertionError):
        _check_answer(doc, registry, "/api/billing/usage", "post", response)
    with pytest.raises(AssertionError):
        _response_spec(doc, "/api/billing/usage", "post", 418)
