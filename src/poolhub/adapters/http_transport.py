"""The coordinator's HTTP plumbing: a maintained transport under `httpx.AsyncClient`, one TLS context, and a
total deadline per request.

Two maintained transports are available, measured against each other by `poolhub bench billing
--transports aiohttp,httpx`: aiohttp's (through `httpx-aiohttp`, the default: it costs the least CPU per
request here) and httpx's own (httpcore). Both keep connections alive, up to `max_connections` at once.
HTTP/2 is not offered: the coordinator (and its stub) speak HTTP/1.1.

Neither transport bounds a whole request: their read timeouts restart with every chunk that arrives, so a
coordinator that trickles its answer a byte at a time would hold a sync for ever. `DeadlineClient` puts one
`asyncio.timeout` around each request, from the connection attempt to the last byte of the body.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any, Literal

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = [
    "DEFAULT_TRANSPORT",
    "TRANSPORTS",
    "DeadlineClient",
    "DeadlineExceeded",
    "TransportKind",
    "make_transport",
    "tls_context",
]

TransportKind = Literal["aiohttp", "httpx"]
TRANSPORTS: tuple[TransportKind, ...] = ("aiohttp", "httpx")
DEFAULT_TRANSPORT: TransportKind = "aiohttp"

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})


class DeadlineExceeded(httpx.TimeoutException):
    """The whole request (connect, send, status, headers and body) took longer than the client's deadline."""


def tls_context(ca_bundle: str | Path | None = None) -> ssl.SSLContext:
    """A client TLS context with certificate and host name verification on.

    It trusts `ca_bundle` (a PEM file) when given, else the system's store. Build it once per client: a
    context loads and parses every trusted certificate when it is made.
    """
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle is not None else None)
    # create_default_context already sets these; stated so that no later edit can weaken them unnoticed.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def make_transport(
    kind: TransportKind = DEFAULT_TRANSPORT,
    *,
    max_connections: int = 64,
    keepalive_expiry_s: float = 4.0,
    ssl_context: ssl.SSLContext | None = None,
) -> httpx.AsyncBaseTransport:
    """A pooled keep-alive transport of the given kind; its connections close with the client.

    Idle connections are dropped after `keepalive_expiry_s`, kept under the 5 s after which uvicorn (the
    stub's server, and a common one) closes them, so that a request seldom goes out on a connection the
    server is closing at that moment.
    """
    if max_connections < 1 or keepalive_expiry_s < 0:
        raise ValueError("max_connections must be >= 1 and keepalive_expiry_s >= 0")
    context = ssl_context or tls_context()
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=keepalive_expiry_s,
    )
    if kind == "httpx":
        return httpx.AsyncHTTPTransport(verify=context, limits=limits, trust_env=False)
    if kind != "aiohttp":
        raise ValueError(f"unknown transport {kind!r}: expected one of {', '.join(TRANSPORTS)}")

    def session() -> aiohttp.ClientSession:
        # Built on first use, inside the event loop that will run it (aiohttp binds a session to its loop).
        connector = aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=0, keepalive_timeout=keepalive_expiry_s, ssl=context
        )
        # No cookie jar: the coordinator's API is stateless, and nothing it sets should ride along later.
        return aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False
        )

    return AiohttpTransport(verify=context, trust_env=False, limits=limits, client=session)


def _dropped_before_answering(exc: httpx.TransportError) -> bool:
    """The server closed the connection after taking the request and before any byte of an answer.

    That is the keep-alive race: the server timed out a kept-alive connection just as a request went out
    on it. httpcore says so with RemoteProtocolError, or a ReadError/WriteError when the close arrived as
    a reset; httpx-aiohttp maps aiohttp's ServerDisconnectedError to another class, so look at the cause.
    """
    if isinstance(exc.__cause__, aiohttp.ServerDisconnectedError):
        return True
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return True
    return isinstance(exc, httpx.RemoteProtocolError) and "without sending" in str(exc)


def _unless_a_timeout(exc: httpx.ConnectTimeout, request: httpx.Request) -> httpx.TransportError:
    """httpx-aiohttp reports every aiohttp connection error as ConnectTimeout: a refused connection, a
    server that hung up, a reset. Logs and operators should read what happened, so name it properly."""
    cause = exc.__cause__
    if cause is None or isinstance(cause, TimeoutError):
        return exc
    if isinstance(cause, aiohttp.ClientConnectorError):
        return httpx.ConnectError(f"cannot connect: {cause}", request=request)
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(f"server disconnected: {cause}", request=request)
    return httpx.ReadError(f"connection failed: {type(cause).__name__}: {cause}", request=request)


class _NoCookies(httpx.Cookies):
    """Keeps nothing a server sets. The coordinator's API is stateless, so a cookie could only ride along
    uninvited, and httpx parses every response's cookies through `http.cookiejar`: about a tenth of the
    client's CPU per usage line."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class DeadlineClient(httpx.AsyncClient):
    """`httpx.AsyncClient` with a total deadline per request, one harmless retry, and no cookie jar.

    `deadline_s` bounds each `send` from start to the last byte of the body (for `stream=True` only up to
    the headers; nothing here streams). A request the server dropped without answering is sent once more,
    within the same deadline, when that cannot do anything twice: an idempotent method, or a request that
    carries an `Idempotency-Key`.
    """

    def __init__(self, *, deadline_s: float, **kwargs: Any) -> None:
        if not deadline_s > 0:
            raise ValueError("deadline_s must be > 0")
        super().__init__(**kwargs)
        self.deadline_s = deadline_s
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("the coordinator's client keeps no cookies")

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        scope = asyncio.timeout(self.deadline_s)
        try:
            async with scope:
                try:
                    return await self._send_once(request, stream, auth, follow_redirects)
                except httpx.TransportError as exc:
                    retry_is_harmless = (
                        request.method in _IDEMPOTENT_METHODS or "idempotency-key" in request.headers
                    )
                    if not (retry_is_harmless and _dropped_before_answering(exc)):
                        raise
                return await self._send_once(request, stream, auth, follow_redirects)
        except TimeoutError:
            if not scope.expired():
                raise
            raise DeadlineExceeded(
                f"no complete answer within the {self.deadline_s:g} s deadline", request=request
            ) from None

    async def _send_once(
        self, request: httpx.Request, stream: bool, auth: Any, follow_redirects: Any
    ) -> httpx.Response:
        try:
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        except httpx.ConnectTimeout as exc:
            raise _unless_a_timeout(exc, request) from exc.__cause__
        except ValueError as exc:
            # aiohttp refuses a CR or LF in a header value (header injection) with a bare ValueError.
            raise httpx.LocalProtocolError(f"invalid request: {exc}", request=request) from exc
        except aiohttp.ClientError as exc:
            # httpx-aiohttp maps connection and payload errors only; a malformed answer (bad status line,
            # oversized headers) would escape as aiohttp's own exception, which no caller expects.
            raise httpx.RemoteProtocolError(
                f"malformed answer: {type(exc).__name__}: {exc}", request=request
            ) from exc
