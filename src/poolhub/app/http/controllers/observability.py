"""Public health and Prometheus metrics, both answered from memory."""

from __future__ import annotations

from dishka.integrations.litestar import FromDishka, inject
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from poolhub.app.http.schemas.miners import Health
from poolhub.app.metrics import Metrics
from poolhub.app.runtime.background import DatabaseProbe
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
    async def metrics(
        self, metrics: FromDishka[Metrics], directory: FromDishka[LiveState], clock: FromDishka[Clock]
    ) -> bytes:
        metrics.miners_online.set(directory.online_count(clock.now()))
        metrics.miners_registered.set(len(directory))
        metrics.pending_beats.set(directory.pending_beats())
        metrics.writebehind_depth.labels(kind="beat").set(directory.pending_beats())
        metrics.writebehind_depth.labels(kind="match_record").set(directory.pending_match_records())
        return metrics.render()
