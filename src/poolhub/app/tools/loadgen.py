"""A small HTTP/1.1 keep-alive load generator over raw asyncio streams.

A general-purpose client (httpx) spends about a millisecond of CPU per request, which on a 2-core
machine would measure the client rather than the server; this one sends pre-encoded requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def encode_request(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive connection; `request` sends bytes and returns (status, body)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self._reader.readexactly(length) if length else b""
        return status, body

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def run_load(
    url: str,
    make_request: Callable[[int], bytes],
    *,
    concurrency: int,
    requests: int | None = None,
    seconds: float | None = None,
    expect: tuple[int, ...] = (200,),
    on_response: Callable[[int, int, bytes], None] | None = None,
) -> LoadResult:
    """Send requests from `concurrency` connections until `requests` are done or `seconds` pass."""
    connections = [await Connection.open(url) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.perf_counter() + seconds if seconds is not None else float("inf")

    async def worker(connection: Connection) -> None:
        nonlocal errors, issued
        while time.perf_counter() < deadline and (requests is None or issued < requests):
            number = issued
            issued += 1
            started = time.perf_counter()
            status, body = await connection.request(make_request(number))
            latencies.append((time.perf_counter() - started) * 1000)
            if on_response is not None:
                on_response(number, status, body)
            if status not in expect:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        await connection.close()
    return LoadResult(len(latencies), errors, elapsed, tuple(latencies))


def ws_text_frame(payload: bytes) -> bytes:
    """A client text frame with an all-zero masking key.

    RFC 6455 wants an unpredictable key (it protects proxies, not the server); a load generator on
    loopback may use zero, which leaves the payload as is and lets every frame be encoded once.
    """
    header = bytearray([0x81])
    length = len(payload)
    if length < 126:
        header.append(0x80 | length)
    elif length < 65536:
        header.append(0x80 | 126)
        header += length.to_bytes(2, "big")
    else:
        header.append(0x80 | 127)
        header += length.to_bytes(8, "big")
    return bytes(header) + b"\x00\x00\x00\x00" + payload


class RawWebSocket:
    """A minimal WebSocket client: handshake, send pre-encoded frames, read one server frame."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, url: str, path: str, token: str) -> RawWebSocket:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise ConnectionError(f"WebSocket upgrade refused: {head[:40]!r}")
        return cls(reader, writer)

    async def exchange(self, frame: bytes) -> tuple[int, bytes]:
        """Send one frame and read the next; returns (opcode, payload)."""
        self._writer.write(frame)
        return await self.read()

    async def read(self) -> tuple[int, bytes]:
        first, second = await self._reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self._reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self._reader.readexactly(8), "big")
        return first & 0x0F, await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self._writer.wait_closed()
