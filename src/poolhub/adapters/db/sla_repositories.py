"""SQL adapters of the SLA and capacity ports: set-based reads, batched writes; they never commit."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec
from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import (
    ARRAY,
    Float,
    and_,
    bindparam,
    case,
    func,
    insert,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from poolhub.adapters.db.models import FeedbackRow, MinerRow, MinerStatusRow, PresenceIntervalRow
from poolhub.adapters.db.repositories import chunks, dialect_insert, is_postgres, page_of, table_of
from poolhub.adapters.db.sla_models import POOL_SUBJECT, SlaMetricRow, SlaViolationRow
from poolhub.domain.ports import (
    FeedbackWindowStats,
    MinerSlaFacts,
    OpenViolationKey,
    SlaRepository,
    StoredMetric,
    StoredViolation,
)
from poolhub.domain.sla import (
    Interval,
    LatencyStats,
    Measurement,
    MetricType,
    OpenViolation,
    Severity,
    latency_stats,
)

_PERCENTILES = (0.5, 0.95, 0.99)


_json = msgspec.json.Encoder()


def _metric(row: Any) -> StoredMetric:
    return StoredMetric(
        id=row.id,
        miner_id=row.miner_id,
        metric_type=row.metric_type,
        metric_value=row.metric_value,
        threshold=row.threshold,
        is_violation=row.is_violation,
        timestamp=row.timestamp,
        metadata=dict(row.metadata_ or {}),
    )


def _violation(row: Any) -> StoredViolation:
    return StoredViolation(
        id=row.id,
        miner_id=row.miner_id,
        violation_type=row.violation_type,
        severity=row.severity,
        metric_value=row.metric_value,
        threshold=row.threshold,
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        duration_sec=row.duration_sec,
        metadata=dict(row.metadata_ or {}),
    )


_UNNEST_METRICS = text(
    """
    INSERT INTO sla_metrics
        (miner_id, metric_type, metric_value, threshold, is_violation, "timestamp", metadata)
    SELECT u.miner_id, u.metric_type, u.metric_value, u.threshold, u.is_violation, :at,
        CAST(u.metadata AS JSONB)
    FROM unnest(
        CAST(:miner_ids AS VARCHAR[]), CAST(:types AS VARCHAR[]), CAST(:metric_values AS FLOAT8[]),
        CAST(:thresholds AS FLOAT8[]), CAST(:violations AS BOOLEAN[]), CAST(:metadata AS TEXT[])
    ) AS u(miner_id, metric_type, metric_value, threshold, is_violation, metadata)
    """
).bindparams(bindparam("at", type_=DateTimeUTC(timezone=True)))


class SqlSlaRepository(SlaRepository):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def miner_exists(self, miner_id: str) -> bool:
        result = await self._session.execute(select(MinerRow.miner_id).where(MinerRow.miner_id == miner_id))
        return result.first() is not None

    async def miner_facts(self) -> list[MinerSlaFacts]:
        result = await self._session.execute(
            select(
                MinerRow.miner_id,
                MinerRow.registered_at,
                MinerRow.max_parallel,
                MinerStatusRow.queue_len,
                MinerStatusRow.busy,
                MinerStatusRow.last_beat_at,
                MinerStatusRow.logged_out_at,
            )
            .join(MinerStatusRow, MinerStatusRow.miner_id == MinerRow.miner_id)
            .order_by(MinerRow.miner_id)
        )
        return [
            MinerSlaFacts(
                miner_id=miner_id,
                registered_at=registered_at,
                max_parallel=max_parallel,
                queue_len=queue_len,
                busy=busy,
                last_beat_at=last_beat_at,
                logged_out_at=logged_out_at,
            )
            for miner_id, registered_at, max_parallel, queue_len, busy, last_beat_at, logged_out_at in (
                result.tuples()
            )
        ]

    async def presence(self, since: datetime, until: datetime) -> dict[str, list[Interval]]:
        result = await self._session.execute(
            select(PresenceIntervalRow.miner_id, PresenceIntervalRow.started_at, PresenceIntervalRow.ended_at)
            .where(PresenceIntervalRow.ended_at > since, PresenceIntervalRow.started_at < until)
            .order_by(PresenceIntervalRow.miner_id)
        )
        intervals: dict[str, list[Interval]] = {}
        for miner_id, started_at, ended_at in result.tuples():
            intervals.setdefault(miner_id, []).append(Interval(start=started_at, end=ended_at))
        return intervals

    async def feedback_stats(self, since: datetime, until: datetime) -> list[FeedbackWindowStats]:
        window = and_(FeedbackRow.created_at >= since, FeedbackRow.created_at <= until)
        completed = func.count().filter(FeedbackRow.outcome == "completed")
        failed = func.count().filter(FeedbackRow.outcome == "failed")
        latency = FeedbackRow.latency_ms
        if is_postgres(self._session):
            # One pass: counts, mean and the three percentiles (percentile_cont interpolates linearly,
            # like the domain's latency_stats) per miner, all computed by PostgreSQL.
            percentiles = func.percentile_cont(type_coerce(list(_PERCENTILES), ARRAY(Float))).within_group(
                latency
            )
            result = await self._session.execute(
                select(
                    FeedbackRow.miner_id,
                    completed,
                    failed,
                    func.count(latency),
                    func.avg(latency),
                    percentiles,
                )
                .where(window)
                .group_by(FeedbackRow.miner_id)
            )
            stats = []
            for miner_id, n_completed, n_failed, n_latency, mean, points in result.tuples():
                summary = None
                if n_latency:
                    p50, p95, p99 = (float(p) for p in points)
                    summary = LatencyStats(count=int(n_latency), mean=float(mean), p50=p50, p95=p95, p99=p99)
                stats.append(FeedbackWindowStats(miner_id, int(n_completed), int(n_failed), summary))
            return stats
        # SQLite has no percentile aggregate: counts in SQL, then every latency of the window in one
        # ordered query, summarised per miner in Python.
        counts = await self._session.execute(
            select(FeedbackRow.miner_id, completed, failed).where(window).group_by(FeedbackRow.miner_id)
        )
        by_miner = {miner_id: (int(c), int(f)) for miner_id, c, f in counts.tuples()}
        latencies = await self._session.execute(
            select(FeedbackRow.miner_id, latency)
            .where(window, latency.is_not(None))
            .order_by(FeedbackRow.miner_id)
        )
        summaries: dict[str, LatencyStats | None] = {}
        for miner_id, group in itertools.groupby(latencies.tuples(), key=lambda row: row[0]):
            summaries[miner_id] = latency_stats([float(value) for _, value in group if value is not None])
        return [
            FeedbackWindowStats(miner_id, c, f, summaries.get(miner_id))
            for miner_id, (c, f) in by_miner.items()
        ]

    async def add_metrics(self, measurements: Sequence[Measurement], at: datetime) -> int:
        if not measurements:
            return 0
        if is_postgres(self._session):
            # One statement over parallel arrays: tens of thousands of rows per collection would cost
            # a second through a multi-row VALUES insert, and a tenth of that this way.
            await self._session.execute(
                _UNNEST_METRICS,
                {
                    "miner_ids": [m.miner_id for m in measurements],
                    "types": [m.metric_type.value for m in measurements],
                    "metric_values": [m.value for m in measurements],
                    "thresholds": [m.threshold for m in measurements],
                    "violations": [m.is_violation for m in measurements],
                    "metadata": [_json.encode(m.metadata).decode() for m in measurements],
                    "at": at,
                },
            )
            return len(measurements)
        await self._session.execute(
            insert(table_of(SlaMetricRow)),
            [
                {
                    "miner_id": m.miner_id,
                    "metric_type": m.metric_type.value,
                    "metric_value": m.value,
                    "threshold": m.threshold,
                    "is_violation": m.is_violation,
                    "timestamp": at,
                    "metadata": dict(m.metadata),
                }
                for m in measurements
            ],
        )
        return len(measurements)

    async def metrics(
        self, *, since: datetime, miner_id: str | None, offset: int, limit: int
    ) -> tuple[list[StoredMetric], int]:
        query = select(SlaMetricRow).where(SlaMetricRow.timestamp >= since)
        if miner_id is not None:
            query = query.where(SlaMetricRow.miner_id == miner_id)
        rows, total = await page_of(
            self._session, query, (SlaMetricRow.timestamp.desc(), SlaMetricRow.id.desc()), offset, limit
        )
        return [_metric(row[0]) for row in rows], total

    async def count_metrics_since(self, since: datetime) -> int:
        result = await self._session.execute(
            select(func.count()).select_from(SlaMetricRow).where(SlaMetricRow.timestamp >= since)
        )
        return int(result.scalar_one())

    async def open_violations(self) -> list[OpenViolation]:
        result = await self._session.execute(
            select(
                SlaViolationRow.id,
                SlaViolationRow.miner_id,
                SlaViolationRow.violation_type,
                SlaViolationRow.created_at,
                SlaViolationRow.metric_value,
            ).where(SlaViolationRow.resolved_at.is_(None))
        )
        return [
            OpenViolation(
                id=str(id_),
                miner_id=miner_id,
                violation_type=MetricType(violation_type),
                created_at=created_at,
                metric_value=metric_value,
            )
            for id_, miner_id, violation_type, created_at, metric_value in result.tuples()
        ]

    async def open_violation_keys(self) -> list[OpenViolationKey]:
        result = await self._session.execute(
            select(SlaViolationRow.miner_id, SlaViolationRow.violation_type, SlaViolationRow.severity).where(
                SlaViolationRow.resolved_at.is_(None)
            )
        )
        return [OpenViolationKey(m, t, s) for m, t, s in result.tuples()]

    async def open_new_violations(
        self, breaches: Sequence[tuple[Measurement, Severity]], now: datetime
    ) -> int:
        if not breaches:
            return 0
        table = table_of(SlaViolationRow)
        opened = 0
        for chunk in chunks(breaches):
            statement = (
                dialect_insert(self._session, table)
                .values(
                    [
                        {
                            "miner_id": m.miner_id,
                            "subject": m.miner_id if m.miner_id is not None else POOL_SUBJECT,
                            "violation_type": m.metric_type.value,
                            "severity": grade.value,
                            "metric_value": m.value,
                            "threshold": m.threshold,
                            "created_at": now,
                            "updated_at": now,
                            "resolved_at": None,
                            "duration_sec": None,
                        }
                        for m, grade in chunk
                    ]
                )
                .on_conflict_do_nothing(
                    index_elements=["subject", "violation_type"], index_where=table.c.resolved_at.is_(None)
                )
                .returning(table.c.id)
            )
            result = await self._session.execute(statement)
            opened += len(result.all())
        return opened

    async def refresh_violations(
        self, updates: Sequence[tuple[str, Measurement, Severity]], now: datetime
    ) -> None:
        if not updates:
            return
        table = table_of(SlaViolationRow)
        statement = (
            update(table)
            .where(table.c.id == bindparam("b_id"), table.c.resolved_at.is_(None))
            .values(
                metric_value=bindparam("b_value"),
                threshold=bindparam("b_threshold"),
                severity=bindparam("b_severity"),
                updated_at=bindparam("b_now"),
            )
        )
        await self._session.execute(
            statement,
            [
                {
                    "b_id": int(id_),
                    "b_value": m.value,
                    "b_threshold": m.threshold,
                    "b_severity": grade.value,
                    "b_now": now,
                }
                for id_, m, grade in updates
            ],
        )

    async def resolve_violations(
        self, resolutions: Sequence[tuple[str, datetime, float]], metadata: Mapping[str, str] | None = None
    ) -> int:
        if not resolutions:
            return 0
        table = table_of(SlaViolationRow)
        resolved = 0
        # One statement per chunk with RETURNING, so the count is exact even if another collection
        # resolved some of them concurrently.
        for chunk in chunks(resolutions):
            ids = [int(id_) for id_, _, _ in chunk]
            resolved_at = case(
                {int(id_): type_coerce(at, DateTimeUTC(timezone=True)) for id_, at, _ in chunk},
                value=table.c.id,
            )
            duration = case({int(id_): seconds for id_, _, seconds in chunk}, value=table.c.id)
            result = await self._session.execute(
                update(table)
                .where(table.c.id.in_(ids), table.c.resolved_at.is_(None))
                .values(
                    resolved_at=resolved_at,
                    duration_sec=duration,
                    updated_at=resolved_at,
                    **({"metadata": dict(metadata)} if metadata is not None else {}),
                )
                .returning(table.c.id)
            )
            resolved += len(result.all())
        return resolved

    async def violations(
        self,
        *,
        miner_id: str | None,
        resolved: bool,
        offset: int,
        limit: int,
        violation_type: str | None = None,
        severity: str | None = None,
    ) -> tuple[list[StoredViolation], int]:
        query = select(SlaViolationRow)
        query = query.where(
            SlaViolationRow.resolved_at.is_not(None) if resolved else SlaViolationRow.resolved_at.is_(None)
        )
        if miner_id is not None:
            query = query.where(SlaViolationRow.miner_id == miner_id)
        if violation_type is not None:
            query = query.where(SlaViolationRow.violation_type == violation_type)
        if severity is not None:
            query = query.where(SlaViolationRow.severity == severity)
        rows, total = await page_of(
            self._session,
            query,
            (SlaViolationRow.created_at.desc(), SlaViolationRow.id.desc()),
            offset,
            limit,
        )
        return [_violation(row[0]) for row in rows], total
