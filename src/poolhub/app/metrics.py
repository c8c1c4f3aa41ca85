"""Prometheus metrics of one app instance (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from poolhub.domain.matching import REJECTION_REASONS

MATCH_LATENCY_BUCKETS_MS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 25, 50, 100, 250, 1000)


class Metrics:
    """Bounded label values only: rejection reasons and violation types are fixed sets."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.miners_online = Gauge(
            "poolhub_miners_online", "Miners whose lease is live", registry=self.registry
        )
        self.miners_registered = Gauge(
            "poolhub_miners_registered", "Miners known to this process", registry=self.registry
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
            "poolhub_pending_beats", "Beats applied in memory and not yet flushed", registry=self.registry
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
        )
        self.sla_violations_open = Gauge(
            "poolhub_sla_violations_open", "Open SLA violations by type", ["type"], registry=self.registry
        )
        self.sla_collection_seconds = Histogram(
            "poolhub_sla_collection_seconds", "Duration of one SLA collection", registry=self.registry
        )
        self.billing_sync_failures = Counter(
            "poolhub_billing_sync_failures",
            "Usage records the coordinator did not accept on a sync attempt",
            registry=self.registry,
        )
        self.billing_records_pending = Gauge(
            "poolhub_billing_records_pending", "Ledger records not yet delivered", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
