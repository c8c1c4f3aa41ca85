"""POST /v1/miners/register's fast path registers exactly as the framework route does, and answers its errors
the same way."""

from __future__ import annotations

import httpx
import pytest
from litestar.types import Receive, Scope, Send
from structlog.testing import capture_logs

from poolhub.app.main import PoolHub
from poolhub.app.settings import parse_rate_limits
from tests.integration.conftest import ADMIN, Hub, bearer, miner_body, started_hub, test_settings

REGISTER = "/v1/miners/register"
BIG = "x" * (1024 * 1024 + 10)


def _app(hub: Hub) -> PoolHub:
    assert isinstance(hub.app, PoolHub)
    return hub.app


async def _framework(hub: Hub, **request: object) -> httpx.Response:
    """The request with the fast paths switched off."""
    app = _app(hub)
    fast_paths = app.fast_paths
    assert REGISTER in fast_paths, "the fast path is on by default"
    app.fast_paths = {}
    try:
        return await hub.client.post(REGISTER, **request)  # type: ignore[arg-type]
    finally:
        app.fast_paths = fast_paths


class _Served:
    """Counts the requests the registration fast path answered itself (not handed to the framework)."""

    def __init__(self, hub: Hub) -> None:
        self.count = 0
        self._path = _app(hub).fast_paths[REGISTER]
        self._serve = self._path.serve

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        rest = await self._serve(scope, receive, send)
        self.count += rest is None
        return rest

    def __enter__(self) -> _Served:
        self._path.serve = self.serve  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        self._path.serve = self._serve  # type: ignore[method-assign]


async def _served_then_framework(hub: Hub, body: dict[str, object]) -> tuple[httpx.Response, httpx.Response]:
    """The registration answered by the fast path (which must serve it), then by the framework route."""
    with _Served(hub) as served:
        fast = await hub.client.post(REGISTER, json=body)
    assert served.count == 1
    return fast, await _framework(hub, json=body)


async def _listed(hub: Hub) -> dict[str, dict[str, object]]:
    answer = await hub.client.get("/v1/miners", headers=bearer(ADMIN))
    assert answer.status_code == 200
    return {m["miner_id"]: m for m in answer.json()}


async def test_a_registration_answers_like_the_framework_route_and_its_token_works(hub: Hub) -> None:
    with capture_logs() as logs, _Served(hub) as served:
        fast = await hub.client.post(REGISTER, json=miner_body("m-fast"))
    assert served.count == 1
    framework = await _framework(hub, json=miner_body("m-framework"))
    assert fast.status_code == framework.status_code == 201
    assert fast.headers["content-type"] == framework.headers["content-type"] == "application/json"
    assert fast.headers["x-request-id"]
    answer, expected = fast.json(), framework.json()
    assert answer.keys() == expected.keys()
    assert answer["session_token"] != expected["session_token"]
    assert {k: answer[k] for k in ("status", "lease_ttl_sec", "next_heartbeat_sec")} == {
        k: expected[k] for k in ("status", "lease_ttl_sec", "next_heartbeat_sec")
    }
    assert [(e["route"], e["status"]) for e in logs if e["event"] == "request"] == [(REGISTER, 201)]

    beat = await hub.client.post(
        "/v1/miners/heartbeat", json={"queue_len": 1}, headers=bearer(answer["session_token"])
    )
    assert beat.status_code == 200, beat.text
    listed = await _listed(hub)
    same = ("online", "gpu_name", "gpu_vram_gb", "accel", "price_token_per_ksec", "tags", "capabilities")
    assert [listed["m-fast"][k] for k in same] == [listed["m-framework"][k] for k in same]
    assert listed["m-fast"]["online"] is True

    # Registering again is 200 and ends the earlier token.
    again = await hub.client.post(REGISTER, json=miner_body("m-fast"))
    assert again.status_code == 200
    old = await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(answer["session_token"]))
    assert old.status_code == 401


async def test_a_key_that_does_not_match_is_refused_with_the_framework_routes_bytes(hub: Hub) -> None:
    await hub.client.post(REGISTER, json=miner_body("m-1"))
    thief = miner_body("m-1", api_key="someone-elses-key-0123456789")
    fast, framework = await _served_then_framework(hub, thief)
    assert fast.status_code == framework.status_code == 401
    assert fast.content == framework.content
    assert "api_key does not match" in fast.json()["detail"]
    assert fast.headers["www-authenticate"] == framework.headers["www-authenticate"] == "Bearer"
    assert fast.headers["content-length"] == framework.headers["content-length"]
    assert (await _listed(hub))["m-1"]["addr"] == "10.0.0.7:9000"


async def test_a_full_directory_is_refused_with_the_framework_routes_bytes(clean_db: str) -> None:
    async with started_hub(test_settings(clean_db, max_directory_tokens=3)) as hub:
        crowded = miner_body("m-many", tags=["a", "b", "c"], capabilities=["d"])
        fast, framework = await _served_then_framework(hub, crowded)
        assert fast.status_code == framework.status_code == 422
        assert fast.content == framework.content
        assert "MAX_DIRECTORY_TOKENS" in fast.json()["detail"]
        assert await _listed(hub) == {}


@pytest.mark.parametrize(
    ("case", "request_args"),
    [
        ("not JSON", {"content": b"miner_id=m-2", "headers": {"Content-Type": "text/plain"}}),
        ("no content type", {"content": b"{}"}),
        ("bad field", {"json": miner_body("m-2", gpu_count=0)}),
        ("string for a number", {"json": miner_body("m-2", gpu_vram_gb="24")}),
        ("no price", {"json": {k: v for k, v in miner_body("m-2").items() if k != "price_token_per_ksec"}}),
        ("two prices", {"json": miner_body("m-2", base_price="0.5")}),
        ("control character", {"json": miner_body("m-2\u0000")}),
        ("empty body", {"content": b"", "headers": {"Content-Type": "application/json"}}),
        ("broken JSON", {"content": b'{"miner_id": ', "headers": {"Content-Type": "application/json"}}),
        ("over 1 MiB", {"json": miner_body("m-2", gpu_name=BIG)}),
    ],
)
async def test_every_bad_body_is_the_framework_routes_own_and_registers_nothing(
    hub: Hub, case: str, request_args: dict[str, object]
) -> None:
    with _Served(hub) as served:
        fast = await hub.client.post(REGISTER, **request_args)  # type: ignore[arg-type]
    assert served.count == 0, case
    framework = await _framework(hub, **request_args)
    assert 400 <= fast.status_code < 500, case
    assert fast.json()["detail"], case
    assert fast.status_code == framework.status_code, case
    assert fast.content == framework.content, case
    assert await _listed(hub) == {}, case


async def test_a_registration_limit_leaves_registering_to_the_framework_route(clean_db: str) -> None:
    settings = test_settings(clean_db, rate_limits=parse_rate_limits("register:2/minute"))
    async with started_hub(settings) as hub:
        assert REGISTER not in _app(hub).fast_paths
        answers = [await hub.client.post(REGISTER, json=miner_body(f"m-{i}")) for i in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[0].headers["RateLimit-Limit"] == "2"
