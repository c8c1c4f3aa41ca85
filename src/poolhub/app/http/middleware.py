"""Access log: one line per request with request id, route, status and duration; never the query."""

from __future__ import annotations

import time
import uuid

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_log = structlog.get_logger("poolhub.access")
# Probes and scrapes would drown the log; they are still counted by their own metrics.
_QUIET_PATHS = frozenset({"/v1/health", "/v1/metrics"})


def access_log_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope) or uuid.uuid4().hex
        status = 500
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            path = scope.get("path", "")
            if path not in _QUIET_PATHS or status >= 400:
                route = scope.get("path_template") or path
                _log.info(
                    "request",
                    method=scope.get("method"),
                    route=route,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )

    return middleware


def _request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")[:64]
            return text if text.replace("-", "").isalnum() else None
    return None
