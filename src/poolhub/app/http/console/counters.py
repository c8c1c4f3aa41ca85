"""Match rate and p99 latency over a recent window, read from this process's own Prometheus counters."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from poolhub.app.metrics import MATCH_LATENCY_BUCKETS_MS, Metrics

WINDOW_SEC = 60.0
# Overview pages poll every few seconds; a sample per second at most keeps the deque small.
MIN_SAMPLE_GAP_SEC = 1.0
MAX_SAMPLES = 600


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    requests: float
    buckets: tuple[float, ...]  # cumulative counts per upper bound, +Inf last


@dataclass(frozen=True, slots=True)
class MatchActivity:
    requests_total: int
    window_sec: float
    rate_per_sec: float | None
    """None on the first read of a process: there is no earlier sample to compare with yet."""
    p99_ms: float | None
    """None when no match was answered in the window."""


def quantile_from_buckets(q: float, bounds: tuple[float, ...], counts: tuple[float, ...]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the quantile.

    `counts` are cumulative, one per bound plus +Inf last; a quantile in +Inf answers the last bound.
    """
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=False):
        if count >= rank:
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return bounds[-1]


class MatchRateWindow:
    """Samples the match counters when asked and answers rate and p99 over about the last minute.

    Per process, like /v1/metrics: with several workers each one answers for its own requests.
    """

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._now = clock
        self._started = self._now()
        self._samples: deque[_Sample] = deque(maxlen=MAX_SAMPLES)

    def _sample(self) -> _Sample:
        registry = self._metrics.registry
        requests = registry.get_sample_value("poolhub_match_requests_total") or 0.0
        labels = [*(_le(b) for b in MATCH_LATENCY_BUCKETS_MS), "+Inf"]
        buckets = tuple(
            registry.get_sample_value("poolhub_match_latency_ms_bucket", {"le": le}) or 0.0 for le in labels
        )
        return _Sample(self._now(), requests, buckets)

    def read(self) -> MatchActivity:
        current = self._sample()
        # Keep one sample at or beyond the window's start: it is the base the window is measured from.
        while len(self._samples) > 1 and current.at - self._samples[1].at >= WINDOW_SEC:
            self._samples.popleft()
        old_enough = [s for s in self._samples if current.at - s.at >= MIN_SAMPLE_GAP_SEC]
        base = old_enough[0] if old_enough else _Sample(self._started, 0.0, (0.0,) * len(current.buckets))
        if not self._samples or current.at - self._samples[-1].at >= MIN_SAMPLE_GAP_SEC:
            self._samples.append(current)
        elapsed = max(current.at - base.at, 1e-9)
        delta = tuple(c - b for c, b in zip(current.buckets, base.buckets, strict=True))
        p99 = quantile_from_buckets(0.99, MATCH_LATENCY_BUCKETS_MS, delta)
        return MatchActivity(
            requests_total=int(current.requests),
            window_sec=round(elapsed, 1),
            rate_per_sec=(
                round((current.requests - base.requests) / elapsed, 3)
                if elapsed >= MIN_SAMPLE_GAP_SEC
                else None
            ),
            p99_ms=round(p99, 3) if p99 is not None and math.isfinite(p99) else None,
        )


def _le(bound: float) -> str:
    # prometheus_client renders bucket bounds with float repr: 1 -> "1.0", 0.25 -> "0.25".
    return repr(float(bound))
