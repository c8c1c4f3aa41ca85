"""create_app: Litestar wired to the dishka container; its lifespan runs and stops the background loops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import cast

from dishka import AsyncContainer
from dishka.integrations.litestar import setup_dishka
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import (
    ASGIApp,
    LifeSpanReceive,
    LifeSpanScope,
    LifeSpanSend,
    Message,
    Receive,
    Scope,
    Send,
)

from poolhub.app.http import openapi
from poolhub.app.http.aliases import alias_of
from poolhub.app.http.console.controller import console_router
from poolhub.app.http.controllers.billing import BillingController
from poolhub.app.http.controllers.match import MatchController
from poolhub.app.http.controllers.miners import MinerController, heartbeat_socket
from poolhub.app.http.controllers.observability import ObservabilityController, ProbeController
from poolhub.app.http.controllers.sla import SlaController
from poolhub.app.http.errors import EXCEPTION_HANDLERS
from poolhub.app.http.fast_match import MATCH_PATH, MatchFastPath
from poolhub.app.http.fast_register import REGISTER_PATH, RegisterFastPath
from poolhub.app.http.fastpath import FastPath
from poolhub.app.http.middleware import access_log_middleware
from poolhub.app.http.ratelimit import prune_expired, rate_limit_middleware
from poolhub.app.http.strict import StrictRequest
from poolhub.app.ioc.container import make_container
from poolhub.app.runtime.background import Background
from poolhub.app.runtime.billing_jobs import billing_jobs
from poolhub.app.runtime.loop_monitor import LoopMonitor
from poolhub.app.runtime.retention_jobs import retention_jobs
from poolhub.app.runtime.schedulers import PeriodicJob, Scheduler
from poolhub.app.runtime.sla_jobs import sla_jobs, sla_penalty_lifespan
from poolhub.app.settings import Settings

MAX_BODY_BYTES = 1024 * 1024

API_DESCRIPTION = """Pool Hub: the real-time directory of GPU miners and a low-latency matchmaker.

Roles, all as `Authorization: Bearer <token>`: **miner** (its session_token), **coordinator**
(`COORDINATOR_SHARED_SECRET`), **operator** (`POOLHUB_ADMIN_TOKEN`). A missing or invalid token is 401;
a valid token of another role is 403. Money is a decimal string; times are RFC 3339 in UTC.
Errors are `{status_code, detail, extra?}`; bad input is 400 and changes nothing; a body over 1 MiB is 413.
"""


def periodic_jobs(settings: Settings) -> list[PeriodicJob]:
    """Jobs that run once per tick across all processes; each feature adds its own here."""
    jobs: list[PeriodicJob] = []
    jobs.extend(sla_jobs(settings))
    jobs.extend(billing_jobs(settings))
    jobs.extend(retention_jobs())
    return jobs


class PoolHub(Litestar):
    """Litestar that answers HEAD wherever GET answers (routed as GET, sent without the body), hands a
    POST to a busy route to that route's fast path first (`fast_paths`, by path), and logs every other HTTP
    request around the whole framework, so a path no route answers (404, 405) is logged too."""

    fast_paths: Mapping[str, FastPath] = MappingProxyType({})
    _logged: ASGIApp | None = None

    async def __call__(
        self, scope: Scope | LifeSpanScope, receive: Receive | LifeSpanReceive, send: Send | LifeSpanSend
    ) -> None:
        if scope["type"] != ScopeType.HTTP:
            await super().__call__(scope, receive, send)
            return
        http, http_receive, http_send = cast("Scope", scope), cast("Receive", receive), cast("Send", send)
        method = http.get("method")
        if method == "HEAD":
            http = cast("Scope", {**http, "method": "GET"})
            http_send = _without_body(http_send)
        elif method == "POST" and (fast := self.fast_paths.get(http["path"])) is not None:
            rest = await fast.serve(http, http_receive, http_send)
            if rest is None:
                return
            http_receive = rest
        if self._logged is None:
            self._logged = access_log_middleware(self._framework)
        await self._logged(http, http_receive, http_send)

    async def _framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def _without_body(send: Send) -> Send:
    async def headless(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {
                "type": "http.response.body",
                "body": b"",
                "more_body": message.get("more_body", False),
            }
        await send(message)

    return headless


def create_app(settings: Settings, container: AsyncContainer | None = None) -> Litestar:
    container = container or make_container(settings)
    background = Background(container)
    scheduler = Scheduler(container, periodic_jobs(settings))

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        monitor = await container.get(LoopMonitor)
        await background.start()
        scheduler.start()
        monitor.start()
        pruning = asyncio.create_task(prune_expired(app, settings), name="prune-rate-limits")
        try:
            yield
        finally:
            pruning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pruning
            await monitor.stop()
            await scheduler.stop()
            await background.stop()
            await container.close()

    app = PoolHub(
        route_handlers=[
            MinerController,
            heartbeat_socket,
            ObservabilityController,
            ProbeController,
            MatchController,
            SlaController,
            BillingController,
            # The AITBC network's clients: GET /health, GET /metrics and /v1/sla/… (same roles).
            alias_of(ObservabilityController, "/"),
            alias_of(SlaController, "/v1/sla"),
            alias_of(BillingController, "/v1/sla/billing"),
            console_router(),
        ],
        lifespan=[lifespan, sla_penalty_lifespan(container)],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=rate_limit_middleware(settings),
        request_max_body_size=MAX_BODY_BYTES,
        request_class=StrictRequest,
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="Pool Hub",
            version="1.0.0",
            description=API_DESCRIPTION,
            path="/schema",
            render_plugins=[SwaggerRenderPlugin(path="/swagger")],
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(type="http", scheme="bearer", description="role token"),
                }
            ),
        ),
    )
    openapi.install(app)
    fast_match = MatchFastPath(container, settings, app.stores, MAX_BODY_BYTES)
    fast_register = RegisterFastPath(container, settings, MAX_BODY_BYTES)
    fast_paths: dict[str, FastPath] = {}
    if fast_match.enabled:
        fast_paths[MATCH_PATH] = fast_match
    if fast_register.enabled:
        fast_paths[REGISTER_PATH] = fast_register
    app.fast_paths = fast_paths
    app.state.background = background
    app.state.scheduler = scheduler
    setup_dishka(container, app)
    return app
