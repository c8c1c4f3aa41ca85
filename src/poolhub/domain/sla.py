"""SLA measurement, severity, violation lifecycle and the match-score penalty, as pure functions."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np

from poolhub.domain.errors import InvalidInputError
from poolhub.domain.forecasting import Forecast


class MetricType(StrEnum):
    """What an SLA metric measures; also the type of the violation it can open."""

    UPTIME = "uptime_pct"
    RESPONSE_TIME = "response_time_ms"
    COMPLETION_RATE = "completion_rate_pct"
    CAPACITY_AVAILABILITY = "capacity_availability_pct"
    CAPACITY_FORECAST = "capacity_forecast"


class Severity(StrEnum):
    """How far past its threshold a breaching metric is (see `severity`)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


# Metrics where a larger value is worse; every other metric is breached by falling short.
LOWER_IS_BETTER: frozenset[MetricType] = frozenset({MetricType.RESPONSE_TIME, MetricType.CAPACITY_FORECAST})

# Pool-wide metrics are nobody's fault in particular, so they never penalise a miner's score.
POOL_WIDE: frozenset[MetricType] = frozenset({MetricType.CAPACITY_AVAILABILITY, MetricType.CAPACITY_FORECAST})

# Upper bounds of the relative distance past the threshold for LOW, MEDIUM and HIGH; beyond: CRITICAL.
SEVERITY_BANDS: tuple[tuple[float, Severity], ...] = (
    (0.10, Severity.LOW),
    (0.25, Severity.MEDIUM),
    (0.50, Severity.HIGH),
)

SLA_PENALTY = 0.8
SLA_PENALTY_FLOOR = 0.5


@dataclass(frozen=True, slots=True)
class SlaThresholds:
    """The SLA targets; response time and completion rate need `min_samples` outcomes to breach."""

    uptime_pct: float = 95.0
    response_time_ms: float = 1000.0
    completion_rate_pct: float = 90.0
    capacity_availability_pct: float = 80.0
    min_samples: int = 10


@dataclass(frozen=True, slots=True)
class Interval:
    """One online interval from presence history; `end` None means still online."""

    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Summary of the latencies of a window, in milliseconds."""

    count: int
    mean: float
    p50: float
    p95: float
    p99: float


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured metric of a miner (or of the pool when `miner_id` is None) against its threshold."""

    miner_id: str | None
    metric_type: MetricType
    value: float
    threshold: float
    is_violation: bool
    metadata: dict[str, float | int | str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OpenViolation:
    """A violation that is still open, as stored."""

    id: str
    miner_id: str | None
    violation_type: MetricType
    created_at: datetime
    metric_value: float


@dataclass(frozen=True, slots=True)
class ViolationPlan:
    """What to write after one collection round; see `plan_violations`."""

    to_open: tuple[Measurement, ...]
    to_update: tuple[tuple[str, Measurement], ...]
    to_resolve: tuple[tuple[str, datetime, float], ...]
    # Resolved because the metric had no samples in the window (see UNMEASURED_REASON), not recovered.
    to_resolve_unmeasured: tuple[tuple[str, datetime, float], ...] = ()


UNMEASURED_REASON: dict[str, str] = {
    "resolved_reason": "no_samples",
    "detail": "the metric had no samples in the window, so the breach can no longer be shown",
}
"""Metadata of a per-miner violation resolved because its metric was not measured: without it, a miner
that got no more jobs (because its penalty ranked it last) would keep the penalty for good."""


def _require_aware(**instants: datetime) -> None:
    for name, instant in instants.items():
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise InvalidInputError(f"{name} must be a timezone-aware datetime")


def uptime_pct(
    intervals: Sequence[Interval], window_start: datetime, now: datetime, registered_at: datetime
) -> float:
    """Share, in percent, of `[max(window_start, registered_at), now]` covered by the online intervals.

    Intervals are clipped to that window and merged, so overlaps count once; an open interval ends at
    `now`. When the effective window is empty (the miner registered at `now` or later) the result is
    100.0: a miner cannot have been offline during time that did not exist for it yet.
    """
    _require_aware(window_start=window_start, now=now, registered_at=registered_at)
    start = max(window_start, registered_at)
    span = (now - start).total_seconds()
    if span <= 0:
        return 100.0
    clipped: list[tuple[datetime, datetime]] = []
    for interval in intervals:
        _require_aware(interval_start=interval.start)
        end = now if interval.end is None else interval.end
        _require_aware(interval_end=end)
        lo, hi = max(interval.start, start), min(end, now)
        if hi > lo:
            clipped.append((lo, hi))
    clipped.sort()
    covered = 0.0
    cur_lo: datetime | None = None
    cur_hi: datetime | None = None
    for lo, hi in clipped:
        if cur_lo is None or cur_hi is None or lo > cur_hi:
            if cur_lo is not None and cur_hi is not None:
                covered += (cur_hi - cur_lo).total_seconds()
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    if cur_lo is not None and cur_hi is not None:
        covered += (cur_hi - cur_lo).total_seconds()
    return min(100.0, max(0.0, covered / span * 100.0))


def latency_stats(latencies_ms: Sequence[float]) -> LatencyStats | None:
    """Count, mean and linearly interpolated percentiles (numpy's default, PostgreSQL's percentile_cont)."""
    if len(latencies_ms) == 0:
        return None
    values = np.asarray(latencies_ms, dtype=np.float64)
    if not bool(np.all(np.isfinite(values))):
        raise InvalidInputError("latencies must be finite numbers")
    p50, p95, p99 = (float(p) for p in np.percentile(values, [50.0, 95.0, 99.0]))
    return LatencyStats(count=int(values.size), mean=float(values.mean()), p50=p50, p95=p95, p99=p99)


def completion_rate_pct(completed: int, failed: int) -> float | None:
    """Completed ÷ (completed + failed) × 100, or None when there is no outcome at all."""
    if completed < 0 or failed < 0:
        raise InvalidInputError("outcome counts cannot be negative")
    total = completed + failed
    if total == 0:
        return None
    return completed / total * 100.0


def _past_threshold(metric_type: MetricType, value: float, threshold: float) -> bool:
    """Whether the value itself is on the wrong side of the threshold, sample count aside.

    The forecast breaches on reaching the alert threshold (as `hours_until_threshold` does), response
    time only above it, the higher-is-better metrics only below it.
    """
    if metric_type is MetricType.CAPACITY_FORECAST:
        return value >= threshold
    if metric_type is MetricType.RESPONSE_TIME:
        return value > threshold
    return value < threshold


def measure_uptime(miner_id: str, value: float, thresholds: SlaThresholds) -> Measurement:
    """Uptime in percent; breached when below the threshold."""
    threshold = thresholds.uptime_pct
    return Measurement(
        miner_id=miner_id,
        metric_type=MetricType.UPTIME,
        value=value,
        threshold=threshold,
        is_violation=_past_threshold(MetricType.UPTIME, value, threshold),
        metadata={},
    )


def measure_response_time(miner_id: str, stats: LatencyStats, thresholds: SlaThresholds) -> Measurement:
    """The p95 latency; breached when above the threshold with at least `min_samples` latencies."""
    threshold = thresholds.response_time_ms
    past = _past_threshold(MetricType.RESPONSE_TIME, stats.p95, threshold)
    return Measurement(
        miner_id=miner_id,
        metric_type=MetricType.RESPONSE_TIME,
        value=stats.p95,
        threshold=threshold,
        is_violation=past and stats.count >= thresholds.min_samples,
        metadata={
            "count": stats.count,
            "mean": stats.mean,
            "p50": stats.p50,
            "p95": stats.p95,
            "p99": stats.p99,
        },
    )


def measure_completion_rate(
    miner_id: str, completed: int, failed: int, thresholds: SlaThresholds
) -> Measurement | None:
    """Completion rate; None without outcomes; breached when below the threshold given `min_samples`."""
    rate = completion_rate_pct(completed, failed)
    if rate is None:
        return None
    threshold = thresholds.completion_rate_pct
    past = _past_threshold(MetricType.COMPLETION_RATE, rate, threshold)
    return Measurement(
        miner_id=miner_id,
        metric_type=MetricType.COMPLETION_RATE,
        value=rate,
        threshold=threshold,
        is_violation=past and completed + failed >= thresholds.min_samples,
        metadata={"completed": completed, "failed": failed},
    )


def measure_capacity_availability(
    total_slots: int, used_slots: int, thresholds: SlaThresholds
) -> Measurement:
    """Pool-wide free slots ÷ total slots × 100 (0 with no slot, which breaches); breached when below."""
    if total_slots < 0 or used_slots < 0:
        raise InvalidInputError("slot counts cannot be negative")
    used = min(used_slots, total_slots)
    value = (total_slots - used) / total_slots * 100.0 if total_slots > 0 else 0.0
    threshold = thresholds.capacity_availability_pct
    return Measurement(
        miner_id=None,
        metric_type=MetricType.CAPACITY_AVAILABILITY,
        value=value,
        threshold=threshold,
        is_violation=_past_threshold(MetricType.CAPACITY_AVAILABILITY, value, threshold),
        metadata={"total_slots": total_slots, "used_slots": used_slots},
    )


def measure_capacity_forecast(
    forecast: Forecast, alert_threshold_pct: float, within_hours: int = 24
) -> Measurement:
    """Pool-wide: the forecast peak of the next `within_hours`; breached when it reaches the alert threshold.

    The value is the highest forecast utilisation in that span (0 without points), so the violation's
    `metric_value` tells how far the pool is expected to go, and its severity how far past the line.
    """
    near = [point for point in forecast.points if point.hours_ahead <= within_hours]
    value = max((point.value for point in near), default=0.0)
    first = next((point.hours_ahead for point in near if point.value >= alert_threshold_pct), None)
    return Measurement(
        miner_id=None,
        metric_type=MetricType.CAPACITY_FORECAST,
        value=value,
        threshold=alert_threshold_pct,
        is_violation=first is not None,
        metadata={"method": forecast.method, "hours_until_threshold": first, "within_hours": within_hours},
    )


def severity(metric_type: MetricType, value: float, threshold: float) -> Severity:
    """Grade a breach by its distance past the threshold, relative to the threshold.

    distance = (threshold − value) / threshold for higher-is-better metrics (uptime, completion rate,
    capacity availability), (value − threshold) / threshold for response time and capacity forecast.
    distance < 0.10 → low, < 0.25 → medium, < 0.50 → high, otherwise critical; each bound belongs to
    the band above it (exactly 10 % short is medium). A value not past the threshold is low. With a
    threshold ≤ 0 any value past it is critical, since no relative distance exists.
    """
    if not _past_threshold(metric_type, value, threshold):
        return Severity.LOW
    if threshold <= 0:
        return Severity.CRITICAL
    if metric_type in LOWER_IS_BETTER:
        distance = (value - threshold) / threshold
    else:
        distance = (threshold - value) / threshold
    for bound, grade in SEVERITY_BANDS:
        if distance < bound:
            return grade
    return Severity.CRITICAL


def plan_violations(
    measurements: Sequence[Measurement],
    open_violations: Sequence[OpenViolation],
    now: datetime,
    measured_types: Collection[MetricType] | None = None,
) -> ViolationPlan:
    """Decide which violations to open, refresh and resolve after one collection round.

    Keyed by (miner_id, type), with `miner_id` None for the pool:
    - breach and nothing open → open one;
    - breach and open → update the open one(s) with the latest measurement, never a duplicate;
    - measured, open and the value back within the threshold → resolve at `now`, with the seconds since
      `created_at` (never negative) as duration;
    - a miner's violation whose metric was not measured this round (no samples in the window, e.g. no
      feedback) → resolved too, but in `to_resolve_unmeasured`, so the row can say why; a pool-wide one
      stays untouched;
    - measured with the value still past the threshold but too few samples to breach → untouched: that
      is not a recovery, only too little evidence to decide.
    `measured_types`, when given, limits the round to those types: measurements and open violations of
    other types are ignored. Should storage hold several open violations for one key, all are treated
    alike. Output follows the input order. Two measurements of one key are an error.
    """
    _require_aware(now=now)

    def in_scope(metric_type: MetricType) -> bool:
        return measured_types is None or metric_type in measured_types

    latest: dict[tuple[str | None, MetricType], Measurement] = {}
    for measurement in measurements:
        if not in_scope(measurement.metric_type):
            continue
        key = (measurement.miner_id, measurement.metric_type)
        if key in latest:
            raise InvalidInputError(f"two measurements of {key[1]} for {key[0] or 'the pool'} in one round")
        latest[key] = measurement
    open_by_key: dict[tuple[str | None, MetricType], list[OpenViolation]] = {}
    for violation in open_violations:
        if in_scope(violation.violation_type):
            open_by_key.setdefault((violation.miner_id, violation.violation_type), []).append(violation)

    to_open: list[Measurement] = []
    to_update: list[tuple[str, Measurement]] = []
    for key, measurement in latest.items():
        if measurement.is_violation:
            existing = open_by_key.get(key, [])
            if existing:
                to_update.extend((violation.id, measurement) for violation in existing)
            else:
                to_open.append(measurement)
    to_resolve: list[tuple[str, datetime, float]] = []
    unmeasured: list[tuple[str, datetime, float]] = []
    for violation in open_violations:
        if not in_scope(violation.violation_type):
            continue
        duration = max(0.0, (now - violation.created_at).total_seconds())
        found = latest.get((violation.miner_id, violation.violation_type))
        if found is None:
            if violation.miner_id is not None and violation.violation_type not in POOL_WIDE:
                unmeasured.append((violation.id, now, duration))
            continue
        if not _past_threshold(found.metric_type, found.value, found.threshold):
            to_resolve.append((violation.id, now, duration))
    return ViolationPlan(
        to_open=tuple(to_open),
        to_update=tuple(to_update),
        to_resolve=tuple(to_resolve),
        to_resolve_unmeasured=tuple(unmeasured),
    )


def sla_penalty(open_types: Iterable[MetricType]) -> float:
    """Factor applied to a miner's match score while it has open violations.

    `SLA_PENALTY` (0.8) per distinct miner-level type with an open violation, multiplied
    (0.8 ** n), never below `SLA_PENALTY_FLOOR` (0.5); 1.0 with none. Several violations of one type
    count once, and pool-wide types (capacity) are ignored: they are not the miner's doing.
    """
    distinct = {MetricType(t) for t in open_types} - POOL_WIDE
    if not distinct:
        return 1.0
    return max(SLA_PENALTY_FLOOR, math.pow(SLA_PENALTY, len(distinct)))


def penalties_by_miner(open_keys: Iterable[tuple[str | None, MetricType | str]]) -> dict[str, float]:
    """The `sla_penalty` factor of every miner with an open miner-level violation (absent means 1.0)."""
    types_by_miner: dict[str, set[MetricType]] = {}
    for miner_id, violation_type in open_keys:
        if miner_id is not None:
            types_by_miner.setdefault(miner_id, set()).add(MetricType(violation_type))
    penalties = {miner_id: sla_penalty(types) for miner_id, types in types_by_miner.items()}
    return {miner_id: factor for miner_id, factor in penalties.items() if factor < 1.0}


STATUS_HEALTHY = "healthy"
STATUS_DEGRADED = "degraded"
STATUS_CRITICAL = "critical"


def sla_status(open_severities: Iterable[Severity | str]) -> str:
    """`critical` if any open violation is critical, else `degraded` if any is open, else `healthy`."""
    severities = [Severity(s) for s in open_severities]
    if not severities:
        return STATUS_HEALTHY
    if Severity.CRITICAL in severities:
        return STATUS_CRITICAL
    return STATUS_DEGRADED
