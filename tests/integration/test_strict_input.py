"""Strict input at the edge: what used to be a 500 or a lax coercion is now a 4xx naming the problem."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.conftest import ADMIN, COORDINATOR, Hub, bearer, miner_body, register

JSON = {"Content-Type": "application/json"}


async def _count_miners(hub: Hub) -> int:
    return int((await hub.client.get("/v1/miners", headers=bearer(ADMIN))).headers["X-Total-Count"])


def _assert_names(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status_code"] == status
    assert field in json.dumps(body), body


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("addr", "10.0.0.7\u0000:9000"),
        ("gpu_name", "RTX\u00004090"),
        ("region", "eu\n"),
        ("proto", "grpc\u007f"),
        ("api_key", "0123456789abcdef\u0000"),
        ("tags", ["eu\u0000west"]),
        ("capabilities", ["model\u001b"]),
    ],
)
async def test_control_characters_in_registration_are_400_naming_the_field(
    hub: Hub, field: str, value: object
) -> None:
    response = await hub.client.post("/v1/miners/register", json=miner_body("m-nul", **{field: value}))
    _assert_names(response, 400, field)
    assert "control characters" in response.json()["detail"]
    assert await _count_miners(hub) == 0


async def test_nul_in_feedback_fail_code_is_400(hub: Hub) -> None:
    await register(hub.client, "m-1")
    match = await hub.client.post("/v1/match", json={"job_id": "j-1"}, headers=bearer(COORDINATOR))
    assert match.status_code == 200
    response = await hub.client.post(
        "/v1/feedback",
        json={"job_id": "j-1", "miner_id": "m-1", "outcome": "failed", "fail_code": "oom\u0000"},
        headers=bearer(COORDINATOR),
    )
    _assert_names(response, 400, "fail_code")


@pytest.mark.parametrize("metadata", [{"note": "a\u0000b"}, {"k\u0000": "v"}], ids=["value", "key"])
async def test_nul_in_usage_metadata_is_400_and_records_nothing(hub: Hub, metadata: object) -> None:
    response = await hub.client.post(
        "/sla/billing/usage/record",
        json={"tenant_id": "t-1", "resource_type": "gpu_hours", "quantity": "1", "metadata": metadata},
        headers=bearer(ADMIN),
    )
    _assert_names(response, 400, "metadata")
    records = await hub.client.get("/sla/billing/records", headers=bearer(ADMIN))
    assert records.headers["X-Total-Count"] == "0"


@pytest.mark.parametrize("path", ["/sla/metrics/%00", "/sla/metrics/a%0Ab", "/sla/metrics/" + "m" * 65])
async def test_path_ids_are_validated_like_body_ids(hub: Hub, path: str) -> None:
    response = await hub.client.get(path, headers=bearer(ADMIN))
    _assert_names(response, 400, "miner_id")


async def test_invalid_utf8_on_the_open_registration_is_400(hub: Hub) -> None:
    body = json.dumps(miner_body("m-utf")).encode().replace(b'"m-utf"', b'"\xff"')
    response = await hub.client.post("/v1/miners/register", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    assert "UTF-8" in response.json()["detail"]
    assert await _count_miners(hub) == 0


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
async def test_json_nested_deeper_than_32_is_400(hub: Hub, depth: int) -> None:
    body = json.dumps(miner_body("m-deep"))[:-1].encode() + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    response = await hub.client.post("/v1/miners/register", content=body, headers=JSON)
    assert response.status_code == 400, response.text
    assert "deeper than 32" in response.json()["detail"]
    assert await _count_miners(hub) == 0


async def test_json_nested_32_deep_is_accepted(hub: Hub) -> None:
    body = json.dumps(miner_body("m-32"))[:-1].encode() + b',"x":' + b"[" * 31 + b"]" * 31 + b"}"
    response = await hub.client.post("/v1/miners/register", content=body, headers=JSON)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_a_timestamp_outside_utc_is_400_on_invoice_generation(hub: Hub, when: str) -> None:
    response = await hub.client.post(
        "/sla/billing/invoice/generate",
        json={"tenant_id": "t-1", "period_start": when, "period_end": "2026-01-01T00:00:00Z"},
        headers=bearer(ADMIN),
    )
    _assert_names(response, 400, "period_start")


async def test_a_timestamp_outside_utc_is_400_on_a_heartbeat(hub: Hub) -> None:
    token = await register(hub.client, "m-1")
    response = await hub.client.post(
        "/v1/miners/heartbeat", json={"ts": "0001-01-01T00:00:00+01:00"}, headers=bearer(token)
    )
    _assert_names(response, 400, "ts")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_declared_json_is_415(hub: Hub, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await hub.client.post(
        "/v1/miners/register", content=json.dumps(miner_body("m-ct")).encode(), headers=headers
    )
    assert response.status_code == 415, response.text
    assert "application/json" in response.json()["detail"]
    assert await _count_miners(hub) == 0


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.pool+json"])
async def test_json_media_types_are_accepted(hub: Hub, content_type: str) -> None:
    response = await hub.client.post(
        "/v1/miners/register",
        content=json.dumps(miner_body("m-ok")).encode(),
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 201, response.text


async def test_types_are_strict_over_http_as_over_the_websocket(hub: Hub) -> None:
    response = await hub.client.post("/v1/miners/register", json=miner_body("m-s", cpu_cores="8"))
    _assert_names(response, 400, "cpu_cores")
    token = await register(hub.client, "m-1")
    busy = await hub.client.post("/v1/miners/update", json={"busy": 0}, headers=bearer(token))
    _assert_names(busy, 400, "busy")
    beat = await hub.client.post("/v1/miners/heartbeat", json={"ts": 0}, headers=bearer(token))
    _assert_names(beat, 400, "ts")
    miner = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()[0]
    assert miner["busy"] is False


async def test_an_out_of_range_number_names_the_field(hub: Hub) -> None:
    body = json.dumps(miner_body("m-big"))[:-1] + ',"ram_gb":1e309}'
    response = await hub.client.post("/v1/miners/register", content=body.encode(), headers=JSON)
    _assert_names(response, 400, "ram_gb")


async def test_head_answers_wherever_get_does(hub: Hub) -> None:
    for path in ("/v1/health", "/livez", "/readyz"):
        response = await hub.client.head(path)
        assert response.status_code == 200, path
        assert response.content == b""
    listed = await hub.client.head("/v1/miners", headers=bearer(ADMIN))
    assert listed.status_code == 200
    assert listed.headers["X-Total-Count"] == "0"
    assert (await hub.client.head("/v1/miners/register")).status_code == 405
