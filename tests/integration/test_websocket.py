"""Heartbeats over WebSocket against a real uvicorn server."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.conftest import ADMIN, LiveServer, bearer, miner_body


async def _register(server: LiveServer, miner_id: str) -> str:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post("/v1/miners/register", json=miner_body(miner_id))
        assert response.status_code == 201
        return str(response.json()["session_token"])


async def _miner(server: LiveServer, miner_id: str) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=server.url) as client:
        listed = (await client.get("/v1/miners", headers=bearer(ADMIN))).json()
    return next(m for m in listed if m["miner_id"] == miner_id)


async def test_each_beat_is_acknowledged_with_the_lease(live_server: LiveServer) -> None:
    token = await _register(live_server, "m-ws")
    async with connect(
        f"{live_server.ws_url}/v1/miners/heartbeat", additional_headers=bearer(token)
    ) as socket:
        for queue_len in (1, 2, 3):
            await socket.send(json.dumps({"queue_len": queue_len, "avg_latency_ms": 80}))
            ack = json.loads(await socket.recv())
            assert ack["type"] == "ack"
            assert ack["lease_expires_at"].endswith("Z")
    miner = await _miner(live_server, "m-ws")
    assert miner["queue_len"] == 3
    assert miner["avg_latency_ms"] == 80


async def test_token_in_the_query_string_works(live_server: LiveServer) -> None:
    token = await _register(live_server, "m-q")
    async with connect(f"{live_server.ws_url}/v1/miners/heartbeat?session_token={token}") as socket:
        await socket.send(json.dumps({}))
        assert json.loads(await socket.recv())["type"] == "ack"


@pytest.mark.parametrize("token", [None, "not-a-token", ADMIN])
async def test_missing_or_bad_token_closes_with_4401_without_an_ack(
    live_server: LiveServer, token: str | None
) -> None:
    headers = bearer(token) if token else {}
    async with connect(f"{live_server.ws_url}/v1/miners/heartbeat", additional_headers=headers) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await socket.send(json.dumps({}))
            await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4401


async def test_a_bad_message_gets_an_error_and_the_connection_stays(live_server: LiveServer) -> None:
    token = await _register(live_server, "m-bad")
    async with connect(
        f"{live_server.ws_url}/v1/miners/heartbeat", additional_headers=bearer(token)
    ) as socket:
        await socket.send(json.dumps({"queue_len": -4}))
        error = json.loads(await socket.recv())
        assert error["type"] == "error" and "queue_len" in error["detail"]
        await socket.send("not json")
        assert json.loads(await socket.recv())["type"] == "error"
        await socket.send(json.dumps({"queue_len": 2}))
        assert json.loads(await socket.recv())["type"] == "ack"


async def test_logout_elsewhere_closes_the_socket_on_the_next_beat(live_server: LiveServer) -> None:
    token = await _register(live_server, "m-out")
    async with connect(
        f"{live_server.ws_url}/v1/miners/heartbeat", additional_headers=bearer(token)
    ) as socket:
        await socket.send(json.dumps({}))
        assert json.loads(await socket.recv())["type"] == "ack"
        async with httpx.AsyncClient(base_url=live_server.url) as client:
            assert (await client.post("/v1/miners/logout", headers=bearer(token))).status_code == 200
        with pytest.raises(ConnectionClosed) as closed:
            await socket.send(json.dumps({}))
            await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_new_connection_closes_the_older_one_with_4409(live_server: LiveServer) -> None:
    token = await _register(live_server, "m-twice")
    url = f"{live_server.ws_url}/v1/miners/heartbeat"
    async with connect(url, additional_headers=bearer(token)) as first:
        await first.send(json.dumps({"queue_len": 1}))
        assert json.loads(await first.recv())["type"] == "ack"
        async with connect(url, additional_headers=bearer(token)) as second:
            await second.send(json.dumps({"queue_len": 2}))
            assert json.loads(await second.recv())["type"] == "ack"
            with pytest.raises(ConnectionClosed) as closed:
                await first.send(json.dumps({"queue_len": 9}))
                await first.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4409
            assert "replaced by a newer connection" in closed.value.rcvd.reason
            await second.send(json.dumps({"queue_len": 3}))
            assert json.loads(await second.recv())["type"] == "ack"
    assert (await _miner(live_server, "m-twice"))["queue_len"] == 3


async def test_a_deeply_nested_message_is_an_error_not_a_crash(live_server: LiveServer) -> None:
    token = await _register(live_server, "m-deep")
    async with connect(
        f"{live_server.ws_url}/v1/miners/heartbeat", additional_headers=bearer(token)
    ) as socket:
        for depth in (33, 1000, 20_000):
            await socket.send('{"x":' + "[" * depth + "]" * depth + "}")
            error = json.loads(await socket.recv())
            assert error["type"] == "error" and "deeper than 32" in error["detail"]
        await socket.send(json.dumps({"ts": 0}))
        error = json.loads(await socket.recv())
        assert error["type"] == "error" and "ts" in error["detail"]
        await socket.send(json.dumps({"queue_len": 2}))
        assert json.loads(await socket.recv())["type"] == "ack"
