"""Response shapes of the SLA and capacity routes (msgspec); field names exactly as API.md."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from poolhub.app.http.schemas.common import Base

MetricTypeName = Annotated[
    Literal["uptime_pct", "response_time_ms", "completion_rate_pct", "capacity_availability_pct"],
    Meta(description="what the metric measures"),
]
ViolationTypeName = Annotated[
    Literal[
        "uptime_pct",
        "response_time_ms",
        "completion_rate_pct",
        "capacity_availability_pct",
        "capacity_forecast",
    ],
    Meta(
        description="the breached metric; capacity_forecast (pool-wide) is open while the utilisation "
        "forecast reaches CAPACITY_ALERT_THRESHOLD_PCT within 24 h"
    ),
]
SeverityName = Annotated[
    Literal["low", "medium", "high", "critical"],
    Meta(
        description="distance past the threshold relative to it: < 10 % low, < 25 % medium, "
        "< 50 % high, otherwise critical"
    ),
]
MethodName = Annotated[
    Literal["holt_winters_additive", "holt_linear", "last_value", "none"],
    Meta(
        description="holt_winters_additive with two days of hourly history or more, holt_linear with "
        "3 to 47 hourly points, last_value with 1-2, none without history"
    ),
]
MetadataValue = float | int | str | None


class SlaMetricRead(Base):
    id: int
    miner_id: Annotated[str | None, Meta(description="null for pool-wide metrics")]
    metric_type: MetricTypeName
    metric_value: float
    threshold: float
    is_violation: bool
    timestamp: Annotated[datetime, Meta(description="when the collection that measured it ran")]
    metadata: Annotated[
        dict[str, MetadataValue],
        Meta(
            description="response_time_ms: count, mean, p50, p95, p99; completion_rate_pct: completed, failed"
        ),
    ]


class SlaViolationRead(Base):
    id: int
    miner_id: Annotated[str | None, Meta(description="null for pool-wide violations")]
    violation_type: ViolationTypeName
    severity: SeverityName
    metric_value: Annotated[float, Meta(description="the latest measured value while open")]
    threshold: float
    created_at: datetime
    resolved_at: Annotated[datetime | None, Meta(description="null while open")]
    duration_sec: Annotated[float | None, Meta(description="resolved_at - created_at; null while open")]
    metadata: Annotated[
        dict[str, Any],
        Meta(
            description="why it was resolved when that was not a recovery: "
            '{"resolved_reason": "no_samples", …} when its metric had no samples in the window; else {}'
        ),
    ] = msgspec.field(default_factory=dict)


class CapacitySnapshotRead(Base):
    id: int
    timestamp: datetime
    total_miners: int
    online_miners: int
    total_slots: int
    used_slots: int
    capacity_utilization_pct: float
    capacity_availability_pct: float


class SlaCollectionRead(Base):
    miners_processed: int
    metrics_recorded: int
    violations_opened: int
    violations_resolved: int
    capacity: CapacitySnapshotRead


class ForecastPointRead(Base):
    timestamp: datetime
    utilization_pct: float
    lower_pct: float
    upper_pct: float


class ForecastPeakRead(Base):
    timestamp: datetime
    utilization_pct: float


class CapacityForecastRead(Base):
    forecast_horizon_hours: int
    method: MethodName
    generated_at: datetime
    history_points: Annotated[int, Meta(description="hourly points the model was fitted on")]
    current_utilization_pct: Annotated[float, Meta(description="utilisation of the newest snapshot")]
    points: Annotated[
        list[ForecastPointRead],
        Meta(description="hourly, one per hour ahead; bounds are a 95 % prediction interval in [0, 100]"),
    ]
    peak: ForecastPeakRead
    alert_threshold_pct: float
    hours_until_threshold: Annotated[
        int | None, Meta(description="first hour ahead whose forecast reaches alert_threshold_pct, else null")
    ]


class RecommendationRead(Base):
    action: Annotated[
        Literal["add_miners", "add_slots", "remove_miners", "hold"], Meta(description="what to do")
    ]
    quantity: int
    reason: str
    priority: Literal["low", "medium", "high", "critical"]


class CapacityRecommendationsRead(Base):
    current_state: Literal["healthy", "watch", "scale_up", "scale_down"]
    recommendations: list[RecommendationRead] = msgspec.field(default_factory=list)


class SlaStatusRead(Base):
    status: Literal["healthy", "degraded", "critical"]
    active_violations: int
    recent_metrics_count: Annotated[int, Meta(description="metrics recorded in the last hour")]
    timestamp: datetime
    billing_blocked: Annotated[
        str | None,
        Meta(
            description="why billing delivery is paused: the coordinator answered as a misconfigured "
            "integration would (401, 403, 404, 3xx), e.g. 'coordinator answered 401 …'; null when it is not"
        ),
    ] = None
