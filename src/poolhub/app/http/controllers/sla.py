"""SLA and capacity routes (operator): metrics, violations, collection, snapshots, forecast, status.

The billing routes under /sla/billing live in their own controller.
"""

from __future__ import annotations

from typing import Annotated

from dishka.integrations.litestar import FromDishka, inject
from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter, QueryParameter

from poolhub.app.http.auth import Role, require
from poolhub.app.http.schemas.common import ID_PATTERN, Limit, Offset, Problem, page_response
from poolhub.app.http.schemas.sla import (
    CapacityForecastRead,
    CapacityRecommendationsRead,
    CapacitySnapshotRead,
    ForecastPeakRead,
    ForecastPointRead,
    RecommendationRead,
    SlaCollectionRead,
    SlaMetricRead,
    SlaStatusRead,
    SlaViolationRead,
)
from poolhub.app.metrics import Metrics
from poolhub.app.runtime.schedulers import exclusive_run
from poolhub.app.runtime.sla_jobs import SLA_COLLECTION_JOB, run_collection
from poolhub.domain.capacity import CapacityPlan
from poolhub.domain.ports import Clock, StoredMetric, StoredSnapshot, StoredViolation, TickLock
from poolhub.domain.use_cases.capacity_planning import (
    CapacityForecastView,
    ForecastCapacity,
    RecommendCapacity,
)
from poolhub.domain.use_cases.collect_sla import CollectSla
from poolhub.domain.use_cases.sla_queries import (
    GetSlaStatus,
    ListCapacitySnapshots,
    ListSlaMetrics,
    ListSlaViolations,
)

OPERATOR: list[dict[str, list[str]]] = [{"BearerToken": []}]
# Forecast values are model output: four decimals are more than their precision.
_FORECAST_DECIMALS = 4

Hours = Annotated[
    int, QueryParameter(ge=1, le=720, description="window: the last N hours (1-720)", required=False)
]


def _metric(metric: StoredMetric) -> SlaMetricRead:
    return SlaMetricRead(
        id=metric.id,
        miner_id=metric.miner_id,
        metric_type=metric.metric_type,  # type: ignore[arg-type]
        metric_value=metric.metric_value,
        threshold=metric.threshold,
        is_violation=metric.is_violation,
        timestamp=metric.timestamp,
        metadata=dict(metric.metadata),  # type: ignore[arg-type]
    )


def to_violation_read(violation: StoredViolation) -> SlaViolationRead:
    return SlaViolationRead(
        id=violation.id,
        miner_id=violation.miner_id,
        violation_type=violation.violation_type,  # type: ignore[arg-type]
        severity=violation.severity,  # type: ignore[arg-type]
        metric_value=violation.metric_value,
        threshold=violation.threshold,
        created_at=violation.created_at,
        resolved_at=violation.resolved_at,
        duration_sec=violation.duration_sec,
        metadata=dict(violation.metadata),
    )


def _snapshot(stored: StoredSnapshot) -> CapacitySnapshotRead:
    values = stored.values
    return CapacitySnapshotRead(
        id=stored.id,
        timestamp=stored.timestamp,
        total_miners=values.total_miners,
        online_miners=values.online_miners,
        total_slots=values.total_slots,
        used_slots=values.used_slots,
        capacity_utilization_pct=values.capacity_utilization_pct,
        capacity_availability_pct=values.capacity_availability_pct,
    )


def _forecast(view: CapacityForecastView) -> CapacityForecastRead:
    def r(value: float) -> float:
        return round(value, _FORECAST_DECIMALS)

    return CapacityForecastRead(
        forecast_horizon_hours=view.forecast_horizon_hours,
        method=view.method,  # type: ignore[arg-type]
        generated_at=view.generated_at,
        history_points=view.history_points,
        current_utilization_pct=r(view.current_utilization_pct),
        points=[
            ForecastPointRead(
                timestamp=p.timestamp,
                utilization_pct=r(p.utilization_pct),
                lower_pct=r(p.lower_pct),
                upper_pct=r(p.upper_pct),
            )
            for p in view.points
        ],
        peak=ForecastPeakRead(timestamp=view.peak.timestamp, utilization_pct=r(view.peak.utilization_pct)),
        alert_threshold_pct=view.alert_threshold_pct,
        hours_until_threshold=view.hours_until_threshold,
    )


def _plan(plan: CapacityPlan) -> CapacityRecommendationsRead:
    return CapacityRecommendationsRead(
        current_state=plan.current_state,  # type: ignore[arg-type]
        recommendations=[
            RecommendationRead(
                action=r.action,  # type: ignore[arg-type]
                quantity=r.quantity,
                reason=r.reason,
                priority=r.priority,  # type: ignore[arg-type]
            )
            for r in plan.recommendations
        ],
    )


class SlaController(Controller):
    path = "/sla"
    tags = ["sla"]  # noqa: RUF012  (Litestar reads it as a class attribute)
    guards = [require(Role.OPERATOR)]  # type: ignore[list-item]  # noqa: RUF012
    security = OPERATOR

    @get(
        "/metrics/{miner_id:str}",
        summary="One miner's SLA metrics of the last `hours`, newest first",
        description="404 when no such miner is registered. Paginated (X-Total-Count).",
        responses={
            404: ResponseSpec(
                generate_examples=False, data_container=Problem, description="no such miner is registered"
            )
        },
    )
    @inject
    async def miner_metrics(
        self,
        miner_id: Annotated[
            str,
            PathParameter(
                min_length=1,
                max_length=64,
                pattern=ID_PATTERN,
                description="the miner's id: 1-64 characters of [A-Za-z0-9._:-]",
            ),
        ],
        use_case: FromDishka[ListSlaMetrics],
        hours: Hours = 24,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Response[list[SlaMetricRead]]:
        page = await use_case.execute(miner_id=miner_id, hours=hours, offset=offset, limit=limit)
        return page_response([_metric(m) for m in page.items], page.total)

    @get(
        "/metrics",
        summary="SLA metrics of every miner and the pool (miner_id null) of the last `hours`, newest first",
        description="Paginated (X-Total-Count).",
    )
    @inject
    async def metrics(
        self,
        use_case: FromDishka[ListSlaMetrics],
        hours: Hours = 24,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Response[list[SlaMetricRead]]:
        page = await use_case.execute(miner_id=None, hours=hours, offset=offset, limit=limit)
        return page_response([_metric(m) for m in page.items], page.total)

    @get(
        "/violations",
        summary="SLA violations, newest first: open ones by default, resolved ones with resolved=true",
        description="Filter by miner with miner_id. Paginated (X-Total-Count). violation_type is one of "
        "the metric types or capacity_forecast (pool-wide, miner_id null).",
    )
    @inject
    async def violations(
        self,
        use_case: FromDishka[ListSlaViolations],
        miner_id: Annotated[
            str | None,
            QueryParameter(
                max_length=64,
                pattern=r"^[A-Za-z0-9._:-]*$(?!\n)",
                description="only this miner's violations (empty: every miner and the pool)",
                required=False,
            ),
        ] = None,
        resolved: Annotated[
            bool,
            QueryParameter(
                description="false (default): open violations; true: resolved ones", required=False
            ),
        ] = False,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Response[list[SlaViolationRead]]:
        page = await use_case.execute(
            miner_id=miner_id or None, resolved=resolved, offset=offset, limit=limit
        )
        return page_response([to_violation_read(v) for v in page.items], page.total)

    @post(
        "/metrics/collect",
        status_code=200,
        summary="Run one SLA collection now",
        description="Measures every registered miner and the pool, records the metrics and a capacity "
        "snapshot, opens, refreshes and resolves violations. Never overlaps a scheduled collection (on "
        "any process): it waits for one in progress, and answers 409 if that takes over 30 s.",
    )
    @inject
    async def collect(
        self,
        use_case: FromDishka[CollectSla],
        metrics: FromDishka[Metrics],
        lock: FromDishka[TickLock],
        clock: FromDishka[Clock],
    ) -> SlaCollectionRead:
        async with exclusive_run(lock, clock, SLA_COLLECTION_JOB):
            report = await run_collection(use_case, metrics)
        return SlaCollectionRead(
            miners_processed=report.miners_processed,
            metrics_recorded=report.metrics_recorded,
            violations_opened=report.violations_opened,
            violations_resolved=report.violations_resolved,
            capacity=_snapshot(report.capacity),
        )

    @get(
        "/capacity/snapshots",
        summary="Capacity snapshots of the last `hours`, newest first",
        description="Paginated (X-Total-Count).",
    )
    @inject
    async def snapshots(
        self,
        use_case: FromDishka[ListCapacitySnapshots],
        hours: Hours = 24,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Response[list[CapacitySnapshotRead]]:
        page = await use_case.execute(hours=hours, offset=offset, limit=limit)
        return page_response([_snapshot(s) for s in page.items], page.total)

    @get(
        "/capacity/forecast",
        summary="Hourly utilisation forecast (Holt-Winters with a daily season) with prediction bounds",
        description="hours_ahead defaults to CAPACITY_FORECAST_HOURS.",
    )
    @inject
    async def forecast(
        self,
        use_case: FromDishka[ForecastCapacity],
        hours_ahead: Annotated[
            int | None,
            QueryParameter(ge=1, le=720, description="hours to forecast (1-720)", required=False),
        ] = None,
    ) -> CapacityForecastRead:
        return _forecast(await use_case.execute(hours_ahead))

    @get(
        "/capacity/recommendations",
        summary="Scaling recommendations from the forecast peak and the current slots",
    )
    @inject
    async def recommendations(self, use_case: FromDishka[RecommendCapacity]) -> CapacityRecommendationsRead:
        return _plan(await use_case.execute())

    @get("/status", summary="Overall SLA status: critical, degraded or healthy")
    @inject
    async def status(self, use_case: FromDishka[GetSlaStatus]) -> SlaStatusRead:
        status = await use_case.execute()
        return SlaStatusRead(
            status=status.status,  # type: ignore[arg-type]
            active_violations=status.active_violations,
            recent_metrics_count=status.recent_metrics_count,
            timestamp=status.timestamp,
            billing_blocked=status.billing_blocked,
        )
