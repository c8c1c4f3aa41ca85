"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process).

With `poolhub serve --workers N` every worker writes its values to files in PROMETHEUS_MULTIPROC_DIR
(prometheus-client's multiprocess mode), and a scrape of any worker renders the whole server: counters and
histograms summed over the workers, per-process gauges aggregated as each one's mode says.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from poolhub.domain.matching import REJECTION_REASONS

MATCH_LATENCY_BUCKETS_MS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 1000)


class Metrics:
    """Bounded label values only: rejection reasons and violation types are fixed sets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.miners_online = Gauge(
            "poolhub_miners_online",
            "Miners whose lease is live",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.miners_registered = Gauge(
            "poolhub_miners_registered",
            "Miners known to this process",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.match_latency_ms = Histogram(
            "poolhub_match_latency_ms",
            "Time to answer POST /v1/match inside the process, in milliseconds",
            buckets=MATCH_LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self.match_requests = Counter(
            "poolhub_match_requests", "Match requests answered", registry=self.registry
        )
        self.match_rejections = Counter(
            "poolhub_match_rejections",
            "Miners rejected by a hard filter, by reason",
            ["reason"],
            registry=self.registry,
        )
        # Resolved once: a labels() lookup per reason per match would show on the hot path.
        self.rejections_by_reason = {r: self.match_rejections.labels(reason=r) for r in REJECTION_REASONS}
        self.heartbeats = Counter(
            "poolhub_heartbeats", "Beats received over HTTP and WebSocket", registry=self.registry
        )
        self.pending_beats = Gauge(
            "poolhub_pending_beats",
            "Beats applied in memory and not yet flushed",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.writebehind_dropped = Counter(
            "poolhub_writebehind_dropped",
            "Queued writes given up: rows the database refused, or items past a full queue, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.writebehind_depth = Gauge(
            "poolhub_writebehind_depth",
            "Items waiting in a write-behind queue, by kind",
            ["kind"],
            registry=self.registry,
            # Each worker has its own queues: the server's depth is their sum.
            multiprocess_mode="livesum",
        )
        self.sla_violations_open = Gauge(
            "poolhub_sla_violations_open",
            "Open SLA violations by type",
            ["type"],
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.sla_collection_seconds = Histogram(
            "poolhub_sla_collection_seconds", "Duration of one SLA collection", registry=self.registry
        )
        self.billing_sync_failures = Counter(
            "poolhub_billing_sync_failures",
            "Usage records the coordinator did not accept on a sync attempt",
            registry=self.registry,
        )
        self.billing_sync_blocked = Gauge(
            "poolhub_billing_sync_blocked",
            "1 while the coordinator blocks billing delivery (it answered 401, 403, 404 or 3xx)",
            registry=self.registry,
        )
        self.billing_records_pending = Gauge(
            "poolhub_billing_records_pending",
            "Ledger records not yet delivered",
            registry=self.registry,
            multiprocess_mode="mostrecent",
        )
        self.event_loop_lag = Gauge(
            "poolhub_event_loop_lag_seconds",
            "Longest delay of the event loop over the last second (how long a ready request could wait)",
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.gc_frozen_objects = Gauge(
            "poolhub_gc_frozen_objects",
            "Long-lived objects moved out of the garbage collector's reach (gc.freeze), per process",
            registry=self.registry,
            multiprocess_mode="liveall",
        )

    def server_view(self) -> CollectorRegistry:
        """The registry to read for the whole server: this process's own, or every worker's merged."""
        if multiprocess_dir() is None:
            return self.registry
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged

    def render(self) -> bytes:
        return generate_latest(self.server_view())

    def close(self) -> None:
        """Drop this process's live gauges from the server's view (its counters stay in the sums)."""
        if multiprocess_dir() is not None:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
