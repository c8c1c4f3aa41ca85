"""KeepAliveTransport against small scripted HTTP servers on 127.0.0.1 (and the stub under uvloop)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import uvloop

from poolhub.adapters.billing import CoordinatorBillingClient, make_http_client
from poolhub.adapters.http_transport import KeepAliveTransport
from poolhub.domain.billing import DEFAULT_UNIT_PRICES, UnitPrices, manual_usage
from tests.integration.coordinator_stub_server import CoordinatorStubServer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's body, or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


class Server:
    """Serves each connection with `handler(reader, writer, n)` for its n-th request, until it says False."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.bodies: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = 0
        while True:
            body = await read_request(reader)
            if body is None:
                break
            self.bodies.append(body)
            number += 1
            if not await self.handler(reader, writer, number):
                break
        writer.close()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        listener.close()


def client(url: str, timeout_s: float = 2.0, **transport: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        timeout=timeout_s,
        transport=KeepAliveTransport(**transport),  # type: ignore[arg-type]
    )


async def ok(_: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
    body = f'{{"n": {number}}}'.encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    writer.write(head + body)
    await writer.drain()
    return True


async def test_requests_reuse_one_kept_alive_connection() -> None:
    async with serving(ok) as (server, url), client(url) as http:
        answers = [(await http.post("/x", json={"i": i})).json()["n"] for i in range(5)]
    assert answers == [1, 2, 3, 4, 5]
    assert server.connections == 1
    assert server.bodies[0] == b'{"i":0}'


async def test_concurrent_requests_are_bounded_by_max_connections() -> None:
    async with serving(ok) as (server, url), client(url, max_connections=3) as http:
        responses = await asyncio.gather(*(http.get("/x") for _ in range(30)))
    assert all(r.status_code == 200 for r in responses)
    assert server.connections <= 3


async def test_chunked_and_gzipped_bodies_are_decoded() -> None:
    payload = gzip.compress(b'{"hello": "world"}')

    async def chunked(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        half = len(payload) // 2
        parts = [payload[:half], payload[half:]]
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n\r\n")
        for part in parts:
            writer.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\nX-Trailer: 1\r\n\r\n")
        return True

    async with serving(chunked) as (server, url), client(url) as http:
        first = await http.get("/x")
        second = await http.get("/x")
    assert first.json() == second.json() == {"hello": "world"}
    assert server.connections == 1


async def test_a_close_delimited_body_is_read_to_the_end_and_not_reused() -> None:
    async def close_delimited(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        return False

    async with serving(close_delimited) as (server, url), client(url) as http:
        assert (await http.get("/x")).text == "all of it"
        assert (await http.get("/x")).text == "all of it"
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        await ok(reader, writer, number)
        return False  # closes after answering, without saying so

    async with serving(once) as (server, url), client(url) as http:
        await http.post("/x", content=b"a")
        await asyncio.sleep(0.05)
        await http.post("/x", content=b"b")
    assert server.connections == 2


async def test_the_keep_alive_race_is_retried_only_when_that_is_harmless() -> None:
    async def drop_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        if number == 1:
            return await ok(reader, writer, number)
        return False  # read the request, closed without an answer

    async with serving(drop_second) as (server, url), client(url, keepalive_expiry=60) as http:
        await http.post("/x", content=b"1")
        retried = await http.post("/x", content=b"2", headers={"Idempotency-Key": "k-1"})
        assert retried.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await http.post("/x", content=b"3")  # the second request on the new connection: dropped
    assert server.connections == 2


async def test_timeouts_and_refused_connections_are_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, _: asyncio.StreamWriter, __: int) -> bool:
        await asyncio.sleep(5)
        return False

    async with serving(silent) as (_, url), client(url, timeout_s=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/x")

    async with serving(ok) as (_, url):
        pass
    async with client(url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/x")


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", "too large"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", "over the limit"),
        (b"SMTP ready\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "middle of the response"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    ],
)
async def test_malformed_answers_are_protocol_errors(answer: bytes, complaint: str) -> None:
    async def bad(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        writer.write(answer)
        await writer.drain()
        return False

    async with serving(bad) as (_, url), client(url) as http:
        with pytest.raises(httpx.RemoteProtocolError, match=complaint):
            await http.get("/x")


async def test_a_large_request_body_arrives_whole() -> None:
    big = b"x" * (3 * 1024 * 1024)
    async with serving(ok) as (server, url), client(url) as http:
        assert (await http.post("/x", content=big)).status_code == 200
    assert server.bodies == [big]


async def test_header_injection_is_refused() -> None:
    async with serving(ok) as (server, url), client(url) as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.get("/x", headers={"X-Evil": "a\r\nInjected: 1"})
    assert server.bodies == []


def test_the_billing_client_works_on_uvloop() -> None:
    """`poolhub serve` runs on uvloop, whose transports are not asyncio classes."""
    prices = UnitPrices.parse(DEFAULT_UNIT_PRICES)

    async def send_some(url: str) -> None:
        async with make_http_client(url, "k") as http:
            gateway = CoordinatorBillingClient(http)
            records = [
                manual_usage(
                    tenant_id="acme",
                    resource_type="gpu_hours",
                    quantity=Decimal(n),
                    unit_price=None,
                    recorded_at=datetime.now(UTC),
                    prices=prices,
                    request_id=f"uv-{n}",
                )
                for n in range(50)
            ]
            await asyncio.gather(*(gateway.send_usage(r) for r in records))
            await gateway.metrics(None, 24)

    with CoordinatorStubServer(api_key="k") as stub:
        uvloop.run(send_some(stub.base_url))
        assert stub.snapshot()["distinct_keys"] == 50
