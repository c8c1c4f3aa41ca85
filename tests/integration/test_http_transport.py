"""The coordinator's HTTP client (`make_http_client`: a maintained transport, a total deadline, one TLS
context) against small scripted HTTP servers on 127.0.0.1, and the stub under uvloop."""

from __future__ import annotations

import asyncio
import gzip
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import uvloop

from poolhub.adapters.billing import CoordinatorBillingClient, make_http_client
from poolhub.adapters.http_transport import TRANSPORTS, DeadlineExceeded, TransportKind
from poolhub.domain.billing import (
    DEFAULT_UNIT_PRICES,
    BillingRetryableError,
    UnitPrices,
    UsageRecord,
    manual_usage,
)
from tests.integration.coordinator_stub_server import CoordinatorStubServer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
PRICES = UnitPrices.parse(DEFAULT_UNIT_PRICES)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and body, or None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


class Server:
    """Serves each connection with `handler(reader, writer, n)` for its n-th request, until it says False."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.bodies: list[bytes] = []
        self.heads: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = 0
        try:
            while True:
                request = await read_request(reader)
                if request is None:
                    break
                self.heads.append(request[0])
                self.bodies.append(request[1])
                number += 1
                if not await self.handler(reader, writer, number):
                    break
        except ConnectionError:
            pass  # the client gave up on us: what several tests are about
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        listener.close()


def client(
    url: str, timeout_s: float = 2.0, kind: TransportKind = "aiohttp", **options: object
) -> httpx.AsyncClient:
    return make_http_client(url, "k", timeout_s, transport_kind=kind, **options)  # type: ignore[arg-type]


async def ok(_: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
    body = f'{{"n": {number}}}'.encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    writer.write(head + body)
    await writer.drain()
    return True


def usage(n: int = 1) -> UsageRecord:
    return manual_usage(
        tenant_id="acme",
        resource_type="gpu_hours",
        quantity=Decimal(n),
        unit_price=None,
        recorded_at=datetime.now(UTC),
        prices=PRICES,
        request_id=f"t-{n}",
    )


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_requests_reuse_one_kept_alive_connection(kind: TransportKind) -> None:
    async with serving(ok) as (server, url), client(url, kind=kind) as http:
        answers = [(await http.post("/x", json={"i": i})).json()["n"] for i in range(5)]
    assert answers == [1, 2, 3, 4, 5]
    assert server.connections == 1
    assert server.bodies[0] == b'{"i":0}'


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_concurrent_requests_are_bounded_by_max_connections(kind: TransportKind) -> None:
    async with serving(ok) as (server, url), client(url, kind=kind, max_connections=3) as http:
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
        assert (await http.post("/x", content=b"a")).status_code == 200
        await asyncio.sleep(0.05)
        assert (await http.post("/x", content=b"b")).status_code == 200
    assert server.connections == 2


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_the_keep_alive_race_is_retried_only_when_that_is_harmless(kind: TransportKind) -> None:
    async def drop_second(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int) -> bool:
        if number == 1:
            return await ok(reader, writer, number)
        return False  # read the request, closed without an answer

    async with serving(drop_second) as (server, url), client(url, kind=kind) as http:
        await http.post("/x", content=b"1")
        retried = await http.post("/x", content=b"2", headers={"Idempotency-Key": "k-1"})
        assert retried.status_code == 200
        with pytest.raises(httpx.TransportError):
            await http.post("/x", content=b"3")  # the second request on the new connection: dropped
    assert server.bodies == [b"1", b"2", b"2", b"3"]  # "3" was sent once, never again
    assert server.connections == 2


async def test_a_silent_server_and_a_refused_connection_are_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, _: asyncio.StreamWriter, __: int) -> bool:
        await asyncio.sleep(5)
        return False

    async with serving(silent) as (_, url), client(url, timeout_s=0.3) as http:
        with pytest.raises(httpx.TimeoutException):
            await http.get("/x")

    async with serving(ok) as (_, url):
        pass
    async with client(url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/x")


async def test_a_connect_timeout_bounds_opening_a_connection() -> None:
    # A listener that never accepts, its backlog already full: Linux drops further SYNs, so a new connection
    # attempt just waits, all on 127.0.0.1.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        started = time.monotonic()
        async with client(f"http://127.0.0.1:{port}", timeout_s=5.0, connect_timeout_s=0.3) as http:
            with pytest.raises(httpx.ConnectTimeout):
                await http.get("/x")
        assert time.monotonic() - started < 2.0
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["head too large", "length over the limit", "not http", "body cut short", "bad chunk size"],
)
async def test_malformed_answers_are_httpx_errors_and_so_retryable(answer: bytes) -> None:
    async def bad(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        writer.write(answer)
        await writer.drain()
        return False

    async with serving(bad) as (_, url), client(url) as http:
        with pytest.raises(httpx.TransportError):
            await http.get("/x")
        with pytest.raises(BillingRetryableError, match="failed"):
            await CoordinatorBillingClient(http).send_usage(usage())


async def test_a_large_request_body_arrives_whole() -> None:
    big = b"x" * (3 * 1024 * 1024)
    async with serving(ok) as (server, url), client(url) as http:
        assert (await http.post("/x", content=big)).status_code == 200
    assert server.bodies == [big]


async def test_cookies_the_server_sets_are_never_sent_back() -> None:
    async def sets_cookie(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        return True

    async with serving(sets_cookie) as (server, url), client(url) as http:
        await http.get("/x")
        await http.get("/x")
        assert not http.cookies
    assert len(server.heads) == 2
    assert all(b"cookie:" not in head.lower() for head in server.heads)


async def test_header_injection_is_refused() -> None:
    async with serving(ok) as (server, url), client(url) as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.get("/x", headers={"X-Evil": "a\r\nInjected: 1"})
    assert server.bodies == []


# --- the total deadline ------------------------------------------------------------------------------------


def trickle(head: bytes, body: bytes, every_s: float) -> Handler:
    """Answers one byte every `every_s` seconds: each read sees progress, the whole takes for ever."""

    async def handler(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        for byte in head + body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)
        return False

    return handler


TRICKLED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n"


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_trickling_answer_is_cut_off_at_the_total_deadline(kind: TransportKind) -> None:
    # Each byte arrives well within the per-read timeout (1 s): only a whole-request deadline stops this.
    handler = trickle(TRICKLED_HEAD, b'{"ok": true, "x"}', every_s=0.2)
    async with serving(handler) as (_, url), client(url, timeout_s=1.0, kind=kind) as http:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="1 s deadline"):
            await http.get("/x")
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 1.6


async def test_a_trickled_body_after_prompt_headers_is_cut_off_too() -> None:
    async def prompt_head(_: asyncio.StreamReader, writer: asyncio.StreamWriter, __: int) -> bool:
        writer.write(TRICKLED_HEAD)
        await writer.drain()
        for byte in b'{"ok": true, "x"}':
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)
        return False

    async with serving(prompt_head) as (_, url), client(url, timeout_s=1.0) as http:
        started = time.monotonic()
        with pytest.raises(BillingRetryableError, match="timed out"):
            await CoordinatorBillingClient(http).send_usage(usage())
        assert time.monotonic() - started < 1.6


async def test_an_answer_within_the_deadline_is_not_disturbed_by_it() -> None:
    handler = trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"{}", every_s=0.005)
    async with serving(handler) as (_, url), client(url, timeout_s=3.0) as http:
        assert (await http.get("/x")).json() == {}


# --- TLS ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line tool."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command line tool is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(  # noqa: S603  (fixed argv)
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_tls_verifies_against_the_ca_bundle(
    certificate: tuple[Path, Path], kind: TransportKind
) -> None:
    async with serving(ok, server_tls(certificate)) as (server, url):
        async with client(url, kind=kind, ca_bundle=str(certificate[0])) as http:
            answers = await asyncio.gather(*(http.get("/x") for _ in range(6)))
        assert all(a.status_code == 200 for a in answers)
        assert server.connections >= 1


async def test_an_untrusted_certificate_is_refused_and_nothing_is_sent(
    certificate: tuple[Path, Path],
) -> None:
    async with serving(ok, server_tls(certificate)) as (server, url), client(url) as http:
        with pytest.raises(BillingRetryableError, match="failed"):
            await CoordinatorBillingClient(http).send_usage(usage())
    assert server.bodies == []


# --- uvloop ------------------------------------------------------------------------------------------------


def test_the_billing_client_works_on_uvloop() -> None:
    """`poolhub serve` runs on uvloop, whose transports are not asyncio classes."""

    async def send_some(url: str) -> None:
        async with make_http_client(url, "k") as http:
            gateway = CoordinatorBillingClient(http)
            records = [usage(n) for n in range(50)]
            await asyncio.gather(*(gateway.send_usage(r) for r in records))
            await gateway.metrics(None, 24)

    with CoordinatorStubServer(api_key="k") as stub:
        uvloop.run(send_some(stub.base_url))
        assert stub.snapshot()["distinct_keys"] == 50
