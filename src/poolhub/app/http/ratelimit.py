"""Per-address rate limits (RATE_LIMITS) on Litestar's RateLimitMiddleware, and the client address itself.

Each configured group gets its own `RateLimitConfig` and store, checked only on that group's routes. The
`auth_failures` group counts answers rather than requests, which the stock middleware cannot do: a subclass
reuses its window bookkeeping (history, reset, headers) but records a hit only when the answer is a 401, and
refuses authenticated routes with 429 while the address is over the limit. Limits live in the process's
memory store: `--workers N` multiplies them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from litestar import Litestar, Request
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.rate_limit import CacheObject, RateLimitConfig, RateLimitMiddleware
from litestar.stores.memory import MemoryStore
from litestar.types import Message, Receive, Scope, Send

from poolhub.app.settings import Settings

# Which routes each request-counting group limits.
GROUP_PATHS: Final[dict[str, frozenset[str]]] = {
    "register": frozenset({"/v1/miners/register"}),
    "match": frozenset({"/v1/match"}),
    "feedback": frozenset({"/v1/feedback"}),
    "heartbeat": frozenset({"/v1/miners/heartbeat", "/v1/miners/update"}),
}
# Routes anyone may call without a token: never refused for earlier 401s.
_PUBLIC_PATHS: Final = frozenset(
    {
        "/v1/miners/register",
        "/v1/health",
        "/v1/metrics",
        "/livez",
        "/readyz",
        "/schema",
        "/schema/openapi.json",
    }
)


class ClientAddress:
    """The socket peer; when the peer is trusted, the first untrusted X-Forwarded-For hop from the right."""

    def __init__(self, trusted: Iterable[str]) -> None:
        entries = tuple(trusted)
        self._any = "*" in entries
        self._networks = tuple(ipaddress.ip_network(e, strict=False) for e in entries if e != "*")
        self._is_trusted = lru_cache(maxsize=4096)(self._check)

    def _check(self, host: str) -> bool:
        if self._any:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def of_scope(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self._is_trusted(peer):
            return peer
        forwarded = [
            value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-forwarded-for"
        ]
        hops = [hop.strip() for value in forwarded for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop[:64]
        return hops[0][:64] if hops else peer

    def __call__(self, request: Request[Any, Any, Any]) -> str:
        return self.of_scope(request.scope)


@dataclass
class GroupLimitConfig(RateLimitConfig):
    """RateLimitConfig for one group of routes: other paths pass straight through, at no cost."""

    paths: frozenset[str] | None = None
    identify: ClientAddress | None = None


class LimitWithRetryAfter(RateLimitMiddleware):
    """The stock middleware, with `Retry-After` on its 429 (seconds until the window resets)."""

    config: GroupLimitConfig

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        paths = self.config.paths
        if paths is not None and scope.get("path") not in paths:
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def create_response_headers(self, cache_object: CacheObject) -> dict[str, str]:
        headers = super().create_response_headers(cache_object)
        if len(cache_object.history) >= self.max_requests:
            headers["Retry-After"] = str(max(1, cache_object.reset - math.floor(time.time())))
        return headers


class AuthFailureLimit(LimitWithRetryAfter):
    """Counts 401 answers per address; past the limit, token routes answer 429 until the window ends."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path") in _PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        store = self.config.get_store_from_app(scope["litestar_app"])
        assert self.config.identify is not None
        key = auth_failure_key(self.config.identify, scope)
        cache_object = await self.retrieve_cached_history(key, store)
        if len(cache_object.history) >= self.max_requests:
            raise TooManyRequestsException(
                detail="too many failed authentications from this address; retry after the window passes",
                headers=self.create_response_headers(cache_object=cache_object),
            )

        async def record_401(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                async with self._lock:
                    latest = await self.retrieve_cached_history(key, store)
                    await self.set_cached_history(key=key, cache_object=latest, store=store)
                    headers = MutableScopeHeaders(message)
                    for name, value in self.create_response_headers(cache_object=latest).items():
                        if name != "Retry-After":
                            headers[name] = value
            await send(message)

        await self.app(scope, receive, record_401)


AUTH_FAILURES_STORE: Final = "rate_limit_auth_failures"


def auth_failure_key(identify: ClientAddress, scope: Scope) -> str:
    """Where an address's failed authentications are counted: the stock key (the middleware's class name
    and the address), built without a Request."""
    return f"{AuthFailureLimit.__name__}::{identify.of_scope(scope)}"


def rate_limit_middleware(settings: Settings) -> list[DefineMiddleware]:
    """The middleware for the configured groups; each counts in its own store (the app's memory stores)."""
    identify = ClientAddress(settings.forwarded_allow_ips)
    middleware: list[DefineMiddleware] = []
    for limit in settings.rate_limits:
        store = f"rate_limit_{limit.group}"
        auth = limit.group == "auth_failures"
        config = GroupLimitConfig(
            rate_limit=(limit.unit, limit.count),
            identifier_for_request=identify,
            middleware_class=AuthFailureLimit if auth else LimitWithRetryAfter,
            store=store,
            paths=None if auth else GROUP_PATHS[limit.group],
            identify=identify,
        )
        middleware.append(config.middleware)
    return middleware


# Expired windows are dropped only when their address comes back; without this, every address that ever
# called would stay in memory.
PRUNE_INTERVAL_SEC: Final = 60.0


async def prune_expired(app: Litestar, settings: Settings, every: float = PRUNE_INTERVAL_SEC) -> None:
    names = [f"rate_limit_{limit.group}" for limit in settings.rate_limits]
    while names:
        await asyncio.sleep(every)
        for name in names:
            store = app.stores.get(name)
            if isinstance(store, MemoryStore):
                await store.delete_expired()
