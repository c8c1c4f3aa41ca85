"""Hourly resampling and exponential-smoothing forecasts of pool utilisation (Holt–Winters, Holt, naive)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from poolhub.domain.errors import InvalidInputError
from poolhub.domain.utc import hour_floor

FloatArray = npt.NDArray[np.float64]

METHOD_HOLT_WINTERS = "holt_winters_additive"
METHOD_HOLT = "holt_linear"
METHOD_LAST_VALUE = "last_value"
METHOD_NONE = "none"

# Holt needs one fitted residual beyond the two points its initial level and trend consume.
MIN_HOLT_POINTS = 3
MIN_SEASONS = 2
PCT_MIN, PCT_MAX = 0.0, 100.0
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    """Forecast utilisation `hours_ahead` hours after the last history bucket, with its interval."""

    hours_ahead: int
    value: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class Forecast:
    """The points of one forecast, the method that made them and its fitted parameters."""

    method: str
    points: tuple[ForecastPoint, ...]
    history_points: int
    params: dict[str, float] = field(default_factory=dict)


def hourly_series(samples: Sequence[tuple[datetime, float]], now: datetime) -> tuple[datetime, list[float]]:
    """Resample irregular (time, value) samples, in any order, into hourly UTC buckets.

    Each bucket holds the mean of its samples; empty buckets between two filled ones are linearly
    interpolated. The series runs from the hour of the oldest sample to the hour of the newest one.
    Samples after `now` are dropped (clock skew must not invent the future); with no sample left the
    answer is (`now` floored to the hour, []).
    """
    now_hour = hour_floor(now)
    sums: dict[datetime, float] = {}
    counts: dict[datetime, int] = {}
    for instant, value in samples:
        bucket = hour_floor(instant)
        if instant > now:
            continue
        if not math.isfinite(value):
            raise InvalidInputError("sample values must be finite numbers")
        sums[bucket] = sums.get(bucket, 0.0) + value
        counts[bucket] = counts.get(bucket, 0) + 1
    if not sums:
        return now_hour, []
    first, last = min(sums), max(sums)
    size = int((last - first) / _HOUR) + 1
    known_x = [int((bucket - first) / _HOUR) for bucket in sorted(sums)]
    known_y = [sums[bucket] / counts[bucket] for bucket in sorted(sums)]
    values = np.interp(np.arange(size, dtype=np.float64), known_x, known_y)
    return first, [float(v) for v in values]


def hours_until_threshold(points: Sequence[ForecastPoint], threshold: float) -> int | None:
    """The first `hours_ahead` whose forecast value reaches `threshold` (≥), None if none does."""
    for point in sorted(points, key=lambda p: p.hours_ahead):
        if point.value >= threshold:
            return point.hours_ahead
    return None


def peak(points: Sequence[ForecastPoint]) -> ForecastPoint | None:
    """The point with the highest forecast value (the earliest on ties), None without points."""
    best: ForecastPoint | None = None
    for point in sorted(points, key=lambda p: p.hours_ahead):
        if best is None or point.value > best.value:
            best = point
    return best


# ---------------------------------------------------------------------------------------------------
# Fitting. Error-correction form of additive Holt–Winters, with e_t = y_t − (l + b + s_t):
#   l ← l + b + α·e,   b ← b + α·β·e,   s_t ← s_t + γ·(1 − α)·e
# which is the textbook form l_t = α(y − s) + (1 − α)(l + b), b_t = β(l_t − l) + (1 − β)b,
# s_t = γ(y − l_t) + (1 − γ)s_{t−m}, so any (α, β, γ) in the unit cube is a valid model.
# Holt's linear method is the same without the season.


def _hw_initial_state(y: FloatArray, m: int) -> tuple[float, float, FloatArray]:
    """Classical start from the first two seasons: level, trend and seasonal indices.

    Trend = difference of the two season means ÷ m; seasonal index i = mean over both seasons of the
    detrended deviation from the season mean (so the indices sum to 0); the level is set so that the
    first one-step prediction is the first season's trend line at t = 0.
    """
    first, second = y[:m], y[m : 2 * m]
    trend = float(second.mean() - first.mean()) / m
    offsets = (np.arange(m, dtype=np.float64) - (m - 1) / 2.0) * trend
    season = ((first - first.mean() - offsets) + (second - second.mean() - offsets)) / 2.0
    level = float(first.mean()) - (m + 1) / 2.0 * trend
    return level, trend, season


def _block_operators(
    alpha: FloatArray, beta: FloatArray, m: int
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Linear maps of one season-long block, per candidate (K of them).

    Within a block every seasonal index is read once and only written afterwards, so with the
    season fixed the level/trend state z = (l, b) follows z ← D·z + k·u, u = y − s, e = u − w·z,
    with D = [[1 − α, 1 − α], [−αβ, 1 − αβ]], k = (α, αβ), w = (1, 1). Unrolled over m steps:
    e = P·z0 + Q·u and z_m = R·z0 + G·u. This turns n Python-level steps into n/m batched matmuls.
    """
    k_count = alpha.size
    ab = alpha * beta
    d = np.empty((k_count, 2, 2))
    d[:, 0, 0] = 1.0 - alpha
    d[:, 0, 1] = 1.0 - alpha
    d[:, 1, 0] = -ab
    d[:, 1, 1] = 1.0 - ab
    gain = np.stack([alpha, ab], axis=1)
    powers = np.empty((m + 1, k_count, 2, 2))
    powers[0] = np.eye(2)
    for j in range(1, m + 1):
        powers[j] = d @ powers[j - 1]
    p = -(powers[:m, :, 0, :] + powers[:m, :, 1, :]).transpose(1, 0, 2)
    dk = (powers[:m] @ gain[None, :, :, None])[..., 0]  # D^j k, shape (m, K, 2)
    impulse = dk.sum(axis=2)  # w·D^j·k, shape (m, K)
    q = np.zeros((k_count, m, m))
    rows = np.arange(m)
    q[:, rows, rows] = 1.0
    for lag in range(1, m):
        q[:, rows[lag:], rows[:-lag]] = -impulse[lag - 1][:, None]
    r = powers[m]
    g = dk[::-1].transpose(1, 2, 0)  # column i is D^(m−1−i) k
    return p, q, r, g


def _hw_sse(
    y: FloatArray,
    m: int,
    alpha: FloatArray,
    beta: FloatArray,
    gamma: FloatArray,
    init: tuple[float, float, FloatArray],
) -> FloatArray:
    """One-step-ahead SSE of additive Holt–Winters for K parameter sets at once."""
    level, trend, season0 = init
    k_count = alpha.size
    p, q, r, g = _block_operators(alpha, beta, m)
    seasonal_gain = (gamma * (1.0 - alpha))[:, None]
    z = np.tile(np.array([level, trend]), (k_count, 1))
    season = np.tile(season0, (k_count, 1))
    sse = np.zeros(k_count)
    n = y.size
    # Unstable corners of the cube may blow up on long histories; their SSE just becomes inf and loses.
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, n - n % m, m):
            u = y[start : start + m] - season
            e = (p @ z[:, :, None])[..., 0] + (q @ u[:, :, None])[..., 0]
            sse += np.einsum("ij,ij->i", e, e)
            z = (r @ z[:, :, None])[..., 0] + (g @ u[:, :, None])[..., 0]
            season = season + seasonal_gain * e
        rest = n % m
        if rest:
            u = y[n - rest :] - season[:, :rest]
            e = (p[:, :rest] @ z[:, :, None])[..., 0] + (q[:, :rest, :rest] @ u[:, :, None])[..., 0]
            sse += np.einsum("ij,ij->i", e, e)
    return np.asarray(np.where(np.isfinite(sse), sse, np.inf), dtype=np.float64)


def _holt_sse(y: FloatArray, alpha: FloatArray, beta: FloatArray) -> FloatArray:
    """One-step-ahead SSE of Holt's linear method for K parameter sets, from t = 2 on.

    The first two points are the start (l = y1, b = y1 − y0): the first prediction they allow is y2's.
    """
    level = np.full(alpha.size, y[1])
    trend = np.full(alpha.size, y[1] - y[0])
    ab = alpha * beta
    sse = np.zeros(alpha.size)
    for value in y[2:]:
        e = value - level - trend
        sse += e * e
        level = level + trend + alpha * e
        trend = trend + ab * e
    return sse


def _zoom_search(
    objective: Callable[[FloatArray], FloatArray],
    axes: Sequence[Sequence[float]],
    steps: Sequence[float],
    rounds: int,
) -> tuple[FloatArray, float]:
    """Minimise over the unit cube: a coarse grid, then grids of ±2 steps around the best, halving the steps.

    Each stage is one batched evaluation, which is what makes it cheap here; ties go to the first
    candidate, so the search is deterministic.
    """
    grid = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(axes), -1)
    sse = objective(grid)
    best = int(np.argmin(sse))
    point, value = grid[:, best], float(sse[best])
    step = np.asarray(steps, dtype=np.float64)
    for _ in range(rounds):
        offsets = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
        local_axes = [
            np.unique(np.clip(np.round(c + offsets * s, 6), 0.0, 1.0))
            for c, s in zip(point, step, strict=True)
        ]
        grid = np.array(np.meshgrid(*local_axes, indexing="ij")).reshape(len(axes), -1)
        sse = objective(grid)
        best = int(np.argmin(sse))
        if float(sse[best]) < value:
            point, value = grid[:, best], float(sse[best])
        step = step / 2.0
    return point, value


_ALPHA_AXIS = (0.02, 0.1, 0.25, 0.45, 0.7, 0.95)
_BETA_AXIS = (0.0, 0.02, 0.08, 0.2, 0.5)
_GAMMA_AXIS = (0.0, 0.05, 0.15, 0.35, 0.7)
_REFINE_ROUNDS = 4


def _fit_holt_winters(y: FloatArray, m: int) -> tuple[float, float, float]:
    init = _hw_initial_state(y, m)
    best, _ = _zoom_search(
        lambda grid: _hw_sse(y, m, grid[0], grid[1], grid[2], init),
        (_ALPHA_AXIS, _BETA_AXIS, _GAMMA_AXIS),
        (0.08, 0.04, 0.08),
        _REFINE_ROUNDS,
    )
    return float(best[0]), float(best[1]), float(best[2])


def _fit_holt(y: FloatArray) -> tuple[float, float]:
    best, _ = _zoom_search(
        lambda grid: _holt_sse(y, grid[0], grid[1]), (_ALPHA_AXIS, _BETA_AXIS), (0.08, 0.04), _REFINE_ROUNDS
    )
    return float(best[0]), float(best[1])


def _run_holt_winters(
    y: FloatArray, m: int, alpha: float, beta: float, gamma: float
) -> tuple[float, float, FloatArray, float]:
    """Final level, trend, seasonal indices (indexed by t mod m) and SSE for one parameter set."""
    level, trend, season0 = _hw_initial_state(y, m)
    season = [float(s) for s in season0]
    ab, sg = alpha * beta, gamma * (1.0 - alpha)
    sse = 0.0
    for t, value in enumerate(y.tolist()):
        i = t % m
        e = value - level - trend - season[i]
        sse += e * e
        level += trend + alpha * e
        trend += ab * e
        season[i] += sg * e
    return level, trend, np.asarray(season, dtype=np.float64), sse


def _interval_points(
    mean: FloatArray, coefficients: FloatArray, sigma: float, level: float
) -> tuple[ForecastPoint, ...]:
    """Points with the ETS class-1 h-step variance σ²·(1 + Σ_{j<h} c_j²), clamped to [0, 100]."""
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    cumulative = (
        np.concatenate([[0.0], np.cumsum(coefficients[:-1] ** 2)]) if coefficients.size else coefficients
    )
    half = z * sigma * np.sqrt(1.0 + cumulative)
    lower = np.clip(mean - half, PCT_MIN, PCT_MAX)
    upper = np.clip(mean + half, PCT_MIN, PCT_MAX)
    value = np.clip(mean, PCT_MIN, PCT_MAX)
    return tuple(
        ForecastPoint(hours_ahead=h + 1, value=float(value[h]), lower=float(lower[h]), upper=float(upper[h]))
        for h in range(mean.size)
    )


def forecast_utilization(
    history: Sequence[float], horizon_hours: int, season: int = 24, level: float = 0.95
) -> Forecast:
    """Forecast hourly utilisation (%) for hours 1…`horizon_hours` after the last history point.

    Method by history length n:
    - n ≥ 2·season: additive Holt–Winters (level, trend, season); α, β, γ minimise the one-step SSE
      over the whole history (coarse grid, then four zoomed grids), started from the first two seasons;
    - 3 ≤ n < 2·season: Holt's linear trend, α and β fitted the same way, started from l = y1, b = y1 − y0;
    - n = 1 or 2: "last_value", flat at the last point; too few points to fit or to size an interval,
      so the bounds are the whole [0, 100] range: the honest "unknown";
    - n = 0: "none", every point 0 with bounds 0…0 (nothing to forecast; callers check `method`).
    Intervals at `level` use σ² = one-step SSE ÷ number of one-step errors and the ETS(A,A,A) / ETS(A,A,N)
    h-step variance σ²·(1 + Σ_{j=1}^{h−1} c_j²), c_j = α + αβ·j (+ γ(1 − α) when j is a multiple of the
    season), so they widen with the horizon. Values and bounds are clamped to [0, 100].
    """
    if horizon_hours < 0:
        raise InvalidInputError("horizon_hours cannot be negative")
    if season < 2:
        raise InvalidInputError("season must be at least 2")
    if not 0.0 < level < 1.0:
        raise InvalidInputError("level must be between 0 and 1")
    y = np.asarray(history, dtype=np.float64)
    if not bool(np.all(np.isfinite(y))):
        raise InvalidInputError("history values must be finite numbers")
    n = y.size
    steps = np.arange(1, horizon_hours + 1, dtype=np.float64)
    if n == 0:
        points = tuple(
            ForecastPoint(hours_ahead=h, value=0.0, lower=0.0, upper=0.0) for h in range(1, horizon_hours + 1)
        )
        return Forecast(method=METHOD_NONE, points=points, history_points=0, params={})
    if n < MIN_HOLT_POINTS:
        last = float(np.clip(y[-1], PCT_MIN, PCT_MAX))
        points = tuple(
            ForecastPoint(hours_ahead=h, value=last, lower=PCT_MIN, upper=PCT_MAX)
            for h in range(1, horizon_hours + 1)
        )
        return Forecast(method=METHOD_LAST_VALUE, points=points, history_points=n, params={"last": last})
    if n < MIN_SEASONS * season:
        alpha, beta = _fit_holt(y)
        level_now, trend, sse = _run_holt(y, alpha, beta)
        sigma = math.sqrt(sse / (n - 2))
        mean = level_now + steps * trend
        coefficients = alpha + alpha * beta * steps
        params = {
            "alpha": alpha,
            "beta": beta,
            "sigma": sigma,
            "level": level_now,
            "trend": trend,
            "sse": sse,
        }
        return Forecast(
            method=METHOD_HOLT,
            points=_interval_points(mean, coefficients, sigma, level),
            history_points=n,
            params=params,
        )
    alpha, beta, gamma = _fit_holt_winters(y, season)
    level_now, trend, indices, sse = _run_holt_winters(y, season, alpha, beta, gamma)
    sigma = math.sqrt(sse / n)
    # Step h lands on time n − 1 + h, whose seasonal index was last updated one season earlier.
    seasonal = indices[(n - 1 + steps.astype(np.int64)) % season]
    mean = level_now + steps * trend + seasonal
    coefficients = (
        alpha + alpha * beta * steps + gamma * (1.0 - alpha) * (steps.astype(np.int64) % season == 0)
    )
    params = {
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
        "sigma": sigma,
        "level": level_now,
        "trend": trend,
        "sse": sse,
    }
    return Forecast(
        method=METHOD_HOLT_WINTERS,
        points=_interval_points(mean, coefficients, sigma, level),
        history_points=n,
        params=params,
    )


def _run_holt(y: FloatArray, alpha: float, beta: float) -> tuple[float, float, float]:
    """Final level, trend and SSE of Holt's method for one parameter set."""
    level, trend = float(y[1]), float(y[1] - y[0])
    ab = alpha * beta
    sse = 0.0
    for value in y[2:].tolist():
        e = value - level - trend
        sse += e * e
        level += trend + alpha * e
        trend += ab * e
    return level, trend, sse


@dataclass(frozen=True, slots=True)
class TimedForecast:
    """A forecast whose points start at the hour after `now`: point k is for `origin` + k hours."""

    origin: datetime
    forecast: Forecast


def forecast_from_now(
    samples: Sequence[tuple[datetime, float]], now: datetime, hours_ahead: int, season: int = 24
) -> TimedForecast:
    """Forecast hours 1…`hours_ahead` after the hour of `now` from irregular (time, utilisation) samples.

    The samples are resampled hourly (`hourly_series`). When the newest sample is older than the
    current hour, the model forecasts across the gap too and only the hours after `now` are kept, so
    point k is always `now` floored to the hour + k hours, whatever the age of the history.
    """
    if hours_ahead < 1:
        raise InvalidInputError("hours_ahead must be at least 1")
    origin = hour_floor(now)
    first, values = hourly_series(samples, now)
    if not values:
        return TimedForecast(origin=origin, forecast=forecast_utilization([], hours_ahead, season=season))
    last = first + _HOUR * (len(values) - 1)
    gap = int((origin - last) / _HOUR)
    raw = forecast_utilization(values, gap + hours_ahead, season=season)
    points = tuple(
        ForecastPoint(hours_ahead=p.hours_ahead - gap, value=p.value, lower=p.lower, upper=p.upper)
        for p in raw.points
        if p.hours_ahead > gap
    )
    forecast = Forecast(
        method=raw.method, points=points, history_points=raw.history_points, params=raw.params
    )
    return TimedForecast(origin=origin, forecast=forecast)
