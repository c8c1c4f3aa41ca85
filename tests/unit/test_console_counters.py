"""The console's match rate and p99: a window over the process's own Prometheus counters."""

from __future__ import annotations

import pytest

from poolhub.app.http.console.counters import MatchRateWindow, quantile_from_buckets
from poolhub.app.metrics import Metrics


class Ticker:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_p99_interpolates_inside_the_bucket_that_holds_it() -> None:
    bounds = (1.0, 2.0, 4.0)
    # 100 observations: 50 under 1 ms, 40 in (1, 2], 10 in (2, 4]; the 99th lies 9/10 into (2, 4].
    assert quantile_from_buckets(0.99, bounds, (50, 90, 100, 100)) == pytest.approx(3.8)
    assert quantile_from_buckets(0.5, bounds, (50, 90, 100, 100)) == pytest.approx(1.0)
    assert quantile_from_buckets(0.99, bounds, (0, 0, 0, 0)) is None
    assert quantile_from_buckets(0.99, bounds, (0, 0, 0, 10)) == 4.0  # beyond the last bound


def test_rate_and_p99_cover_the_last_minute_not_the_whole_life_of_the_process() -> None:
    metrics, clock = Metrics(), Ticker()
    window = MatchRateWindow(metrics, clock)

    def answer(count: int, latency_ms: float) -> None:
        for _ in range(count):
            metrics.match_requests.inc()
            metrics.match_latency_ms.observe(latency_ms)

    answer(100, 40.0)  # slow matches long ago
    first = window.read()
    assert first.rate_per_sec is None  # nothing to compare with yet
    assert first.requests_total == 100

    for _ in range(20):  # the page polls every 5 s for 100 s; 50 fast matches between polls
        clock.now += 5
        answer(50, 0.4)
        latest = window.read()
    assert latest.requests_total == 1100
    assert latest.window_sec == pytest.approx(60, abs=5)
    assert latest.rate_per_sec == pytest.approx(10.0, rel=0.1)
    assert latest.p99_ms is not None and latest.p99_ms <= 0.5  # the slow ones left the window

    clock.now += 120  # no match at all for two minutes
    idle = window.read()
    assert idle.rate_per_sec == 0.0 and idle.p99_ms is None
