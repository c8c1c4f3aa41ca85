"""Public health and Prometheus metrics, both answered from memory."""

from __future__ import annotations

from typing import Any

from dishka.integrations.litestar import FromDishka, inject
from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from poolhub.app.http.schemas.miners import Health, Probe
from poolhub.app.metrics import Metrics
from poolhub.app.runtime.background import DatabaseProbe
from poolhub.app.runtime.loop_monitor import LoopMonitor
from poolhub.domain.ports import Clock, LiveState


class ObservabilityController(Controller):
    path = "/v1"
    tags = ["observability"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @get(
        "/health",
        summary="Liveness and pool size; 503 when the database is down",
        responses={
            503: ResponseSpec(
                generate_examples=False, data_container=Health, description="the database is down"
            )
        },
    )
    @inject
    async def health(
        self,
        directory: FromDishka[LiveState],
        probe: FromDishka[DatabaseProbe],
        clock: FromDishka[Clock],
    ) -> Response[Health]:
        now = clock.now()
        avg = directory.avg_latency_ms(now)
        body = Health(
            status="ok" if probe.ok else "degraded",
            online_miners=directory.online_count(now),
            avg_latency_ms=round(avg, 3) if avg is not None else None,
            db="ok" if probe.ok else "error",
        )
        return Response(body, status_code=HTTP_200_OK if probe.ok else HTTP_503_SERVICE_UNAVAILABLE)

    @get("/metrics", summary="Prometheus text exposition", media_type="text/plain; version=0.0.4")
    @inject
    async def metrics(self, metrics: FromDishka[Metrics], monitor: FromDishka[LoopMonitor]) -> bytes:
        monitor.refresh_directory_gauges()
        return metrics.render()


class ProbeController(Controller):
    """Probes for a process manager or a load balancer; HEAD answers too (see PoolHub in main.py)."""

    path = "/"
    tags = ["observability"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @get("/livez", summary="200 while the process serves requests")
    async def livez(self) -> Probe:
        return Probe(status="ok", reason=None)

    @get(
        "/readyz",
        summary="200 once the directory is loaded and the database answered at the last check",
        responses={
            503: ResponseSpec(
                generate_examples=False, data_container=Probe, description="not ready; `reason` says why"
            )
        },
    )
    @inject
    async def readyz(
        self, request: Request[Any, Any, Any], probe: FromDishka[DatabaseProbe]
    ) -> Response[Probe]:
        background = request.app.state.get("background")
        if background is None or not background.directory_loaded:
            reason: str | None = "the miner directory is not loaded yet"
        elif not probe.ok:
            reason = "the database did not answer at the last check"
        else:
            reason = None
        status = HTTP_200_OK if reason is None else HTTP_503_SERVICE_UNAVAILABLE
        return Response(
            Probe(status="ok" if reason is None else "unavailable", reason=reason), status_code=status
        )
