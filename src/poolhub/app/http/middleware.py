"""Access log: one line per request with request id, route, status and duration; never the query."""

from __future__ import annotations

import itertools
import os
import time

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

_log = structlog.get_logger("poolhub.access")
# Probes and scrapes would drown the log; they are still counted by their own metrics.
_QUIET_PATHS = frozenset({"/v1/health", "/v1/metrics"})
# nginx's status for a client that went away before it was answered: logged, never sent.
CLIENT_CLOSED_REQUEST = 499


class _RequestIds:
    """32 hex digits: 64 random bits fixed per process, then a counter; unique without a syscall each."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_request_ids = _RequestIds()


def access_log_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = request_id_of(scope)
        status = 500
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        answering = gone = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, answering
            if message["type"] == "http.response.start":
                status, answering = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        async def receive_wrapper() -> ReceiveMessage:
            nonlocal gone
            message = await receive()
            # Whatever the app answers a client that left mid-request (an error for the broken body) never
            # reaches it: the line says the client went away, not that the server failed.
            gone = gone or (message["type"] == "http.disconnect" and not answering)
            return message

        try:
            await app(scope, receive_wrapper, send_wrapper)
        finally:
            path = scope.get("path", "")
            if gone:
                status = CLIENT_CLOSED_REQUEST
            if path not in _QUIET_PATHS or status >= 400:
                log_request(scope.get("method"), scope.get("path_template") or path, status, started)

    return middleware


def log_request(method: object, route: str, status: int, started: float, **extra: object) -> None:
    """The access-log line of one answered request; `started` is its `time.perf_counter()` at arrival."""
    _log.info(
        "request",
        method=method,
        route=route,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
        **extra,
    )


def request_id_of(scope: Scope) -> str:
    """The caller's X-Request-Id when it is a plain token, else a new random one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")[:64]
            if text.replace("-", "").isalnum():
                return text
            break
    return _request_ids.next()
