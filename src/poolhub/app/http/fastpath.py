"""Busy POST routes answered without the framework's per-request machinery, for the requests that succeed.

A coordinator fleet calls `/v1/match` far more than any other route, and a fleet of miners starting at once
calls `/v1/miners/register`; Litestar's routing, signature model, guards, request container and response
objects cost them more CPU than the work itself. A fast path answers a request only when it is one its
framework route would answer without an error it has to explain. Anything else goes on to the Litestar
route with the body already read replayed, so validation errors (400, 413, 415), authentication errors,
rate limits and the OpenAPI document stay the framework's. Both ways run the same mapping, use case,
metrics and access-log line, and send the same bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, ReceiveMessage, Scope, Send

_JSON_HEADER: Final = (b"content-type", b"application/json")


class FastPath(Protocol):
    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request and return None, or return the `receive` the framework route must use."""


def first_header(scope: Scope, name: bytes) -> bytes | None:
    """The first header of that (lower-case) name, the one the framework route reads."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(receive: Receive, max_body: int) -> tuple[list[ReceiveMessage], bytes | None]:
    """The messages read and the whole body; None for a body over `max_body` or a disconnect."""
    messages: list[ReceiveMessage] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            return messages, None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return messages, chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replay(messages: list[ReceiveMessage], receive: Receive) -> Callable[[], Awaitable[ReceiveMessage]]:
    """A `receive` that hands out the messages already read before reading on."""
    pending = list(messages)

    async def replaying() -> ReceiveMessage:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying


async def send_json(
    send: Send,
    status: int,
    payload: bytes,
    request_id: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """The whole answer in one body message, with the headers the framework route sends."""
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            _JSON_HEADER,
            (b"content-length", str(len(payload)).encode()),
            *headers,
            (b"x-request-id", request_id.encode()),
        ],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": payload, "more_body": False}
    await send(end)
