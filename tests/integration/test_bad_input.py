"""Malformed requests: each gets a 4xx with a detail naming the problem, and nothing changes."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import ADMIN, Hub, bearer, miner_body, register

LONG_ID = "m" * 65
RAW_PREFIX = (
    b'{"miner_id":"bad","api_key":"0123456789abcdef0","addr":"a","proto":"p","gpu_vram_gb":1,'
    b'"cpu_cores":1,"price_token_per_ksec":"1","max_parallel":1,'
)

REGISTER_CASES: list[tuple[str, object]] = [
    ("not json", b"{this is not json"),
    ("json array", b"[]"),
    ("empty object", {}),
    ("missing api_key", {k: v for k, v in miner_body("bad").items() if k != "api_key"}),
    ("short api_key", miner_body("bad", api_key="short")),
    ("api_key too long", miner_body("bad", api_key="k" * 257)),
    ("miner_id too long", miner_body(LONG_ID)),
    ("miner_id with a space", miner_body("bad id")),
    ("miner_id with a slash", miner_body("bad/id")),
    ("empty miner_id", miner_body("")),
    ("miner_id not a string", {**miner_body("bad"), "miner_id": 123}),
    ("vram negative", miner_body("bad", gpu_vram_gb=-1)),
    ("vram a string", miner_body("bad", gpu_vram_gb="lots")),
    ("vram huge", miner_body("bad", gpu_vram_gb=1e308)),
    ("ram NaN", RAW_PREFIX + b'"ram_gb":NaN}'),
    ("ram Infinity", RAW_PREFIX + b'"ram_gb":1e400}'),
    ("max_parallel zero", miner_body("bad", max_parallel=0)),
    ("gpu_count zero", miner_body("bad", gpu_count=0)),
    ("cpu_cores fractional", miner_body("bad", cpu_cores=1.5)),
    # v1.1: a decimal may be a JSON number (decoded exactly), so 0.75 is valid; these are not.
    ("price 13 decimal places", miner_body("bad", price_token_per_ksec=0.1234567890123)),
    ("price a boolean", miner_body("bad", price_token_per_ksec=True)),
    ("price and base_price differ", miner_body("bad", base_price="0.8")),
    ("no price at all", {k: v for k, v in miner_body("bad").items() if k != "price_token_per_ksec"}),
    ("tags object nested", miner_body("bad", tags={"platform": {"name": "CUDA"}})),
    ("price negative", miner_body("bad", price_token_per_ksec="-0.1")),
    ("price NaN text", miner_body("bad", price_token_per_ksec="NaN")),
    ("price not a number", miner_body("bad", price_token_per_ksec="cheap")),
    ("tags not a list", miner_body("bad", tags="eu-west")),
    ("too many tags", miner_body("bad", tags=[f"t{i}" for i in range(65)])),
    ("tag too long", miner_body("bad", tags=["t" * 129])),
    ("capability not a string", miner_body("bad", capabilities=[1, 2])),
    ("empty addr", miner_body("bad", addr="")),
    ("multi-megabyte body", miner_body("bad", gpu_name="x" * (3 * 1024 * 1024))),
]  # fmt: skip


@pytest.mark.parametrize(("case", "body"), REGISTER_CASES, ids=[c for c, _ in REGISTER_CASES])
async def test_bad_registration_is_rejected_and_registers_nothing(hub: Hub, case: str, body: object) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = await hub.client.post(
        "/v1/miners/register", content=content, headers={"Content-Type": "application/json"}
    )
    assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
    if case == "multi-megabyte body":
        assert response.status_code == 413
    problem = response.json()
    assert problem["status_code"] == response.status_code
    assert problem["detail"]
    listed = await hub.client.get("/v1/miners", headers=bearer(ADMIN))
    assert listed.headers["X-Total-Count"] == "0"


BEAT_CASES: list[tuple[str, object]] = [
    ("queue_len negative", {"queue_len": -1}),
    ("queue_len a list", {"queue_len": [3]}),
    ("latency negative", {"avg_latency_ms": -5}),
    ("temperature absurd", {"temp_c": 1e9}),
    ("ts not a time", {"ts": "yesterday"}),
    ("body a list", [1, 2, 3]),
]


@pytest.mark.parametrize(("case", "body"), BEAT_CASES, ids=[c for c, _ in BEAT_CASES])
async def test_bad_heartbeat_is_rejected_and_changes_nothing(hub: Hub, case: str, body: object) -> None:
    token = await register(hub.client, "m-1")
    response = await hub.client.post("/v1/miners/heartbeat", json=body, headers=bearer(token))
    assert response.status_code == 400, (case, response.text)
    assert response.json()["detail"]
    miner = (await hub.client.get("/v1/miners", headers=bearer(ADMIN))).json()[0]
    assert miner["queue_len"] == 0
    assert miner["avg_latency_ms"] is None


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=501", "offset=-1", "limit=abc", "online=maybe"], ids=lambda q: q
)
async def test_bad_list_query_is_400_naming_the_parameter(hub: Hub, query: str) -> None:
    response = await hub.client.get(f"/v1/miners?{query}", headers=bearer(ADMIN))
    assert response.status_code == 400
    body = response.json()
    assert query.split("=")[0] in json.dumps(body)


async def test_validation_errors_name_the_field(hub: Hub) -> None:
    response = await hub.client.post("/v1/miners/register", json=miner_body("m-1", gpu_vram_gb=-3))
    assert response.status_code == 400
    assert "gpu_vram_gb" in json.dumps(response.json())
