"""`poolhub bench sla`: SLA collection and capacity forecast timings.

bench sla seeds N miners with presence history and M feedback rows in the SLA window (PostgreSQL: COPY;
SQLite: batched inserts), times collections through the same use case the scheduler runs, times a 168 h
forecast from 90 days of hourly snapshots, prints a table and appends it to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from poolhub.adapters.db.engine import redacted_url
from poolhub.adapters.db.migrate import upgrade
from poolhub.adapters.db.models import FeedbackRow, MinerRow, MinerStatusRow, PresenceIntervalRow
from poolhub.adapters.db.sla_models import CapacitySnapshotRow, SlaMetricRow, SlaViolationRow
from poolhub.app.ioc.container import make_container
from poolhub.app.settings import Settings, SettingsError, load_settings
from poolhub.app.tools.report import append_report
from poolhub.domain.capacity import CapacitySnapshotValues
from poolhub.domain.forecasting import forecast_utilization
from poolhub.domain.use_cases.capacity_planning import ForecastCapacity
from poolhub.domain.use_cases.collect_sla import CollectSla

console = Console()

BENCH_PREFIX = "bench-"
FORECAST_HISTORY_DAYS = 90
FORECAST_HOURS = 168
COLLECTION_TARGET_SEC = 5.0
FORECAST_TARGET_MS = 200.0


def settings_for(database_url: str | None) -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        sys.exit(f"poolhub: invalid configuration: {exc}")
    if database_url:
        settings = msgspec.structs.replace(settings, database_url=database_url)
    return settings


# --- synthetic data ------------------------------------------------------------------------------------


def synthetic_utilization(
    hours: int,
    *,
    base: float,
    trend_per_day: float,
    amplitude: float,
    peak_hour: int,
    noise: float,
    seed: int,
    end: datetime,
) -> list[tuple[datetime, float]]:
    """Hourly (time, utilisation %) up to `end`: a linear trend plus a daily cycle peaking at `peak_hour`."""
    rng = np.random.default_rng(seed)
    out: list[tuple[datetime, float]] = []
    for i in range(hours):
        at = end - timedelta(hours=hours - 1 - i)
        cycle = amplitude * math.cos(2 * math.pi * (at.hour - peak_hour) / 24)
        value = base + trend_per_day * (i - hours + 1) / 24 + cycle + rng.normal(0.0, noise)
        out.append((at, float(min(100.0, max(0.0, value)))))
    return out


def snapshot_values(utilization: float, total_slots: int, miners: int) -> CapacitySnapshotValues:
    used = round(utilization * total_slots / 100)
    pct = used / total_slots * 100 if total_slots else 0.0
    return CapacitySnapshotValues(
        total_miners=miners,
        online_miners=miners,
        total_slots=total_slots,
        used_slots=used,
        capacity_utilization_pct=pct,
        capacity_availability_pct=100.0 - pct if total_slots else 0.0,
    )


# --- seeding the SLA benchmark --------------------------------------------------------------------------


def _pool_rows(miners: int, feedback: int, now: datetime, seed: int) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of miners, statuses, presence intervals and feedback, as column-ordered tuples.

    90 % of the miners are online all day; 7 % had an outage of 2-8 h (uptime breach); 3 % are offline.
    Feedback is spread over the last 23 h; 5 % of the miners are slow and fail often.
    """
    rng = np.random.default_rng(seed)
    ids = [f"{BENCH_PREFIX}{i:06d}" for i in range(miners)]
    registered = now - timedelta(days=3)
    kind = rng.random(miners)
    offline = kind > 0.97
    outage = (kind > 0.90) & ~offline
    bad = rng.random(miners) < 0.05
    slots = rng.choice([1, 2, 4, 8], size=miners, p=[0.2, 0.3, 0.4, 0.1])
    queue = np.minimum(rng.integers(0, 6, size=miners), slots)
    rows: dict[str, list[tuple[Any, ...]]] = {"miners": [], "miner_status": [], "presence_intervals": []}
    for i, miner_id in enumerate(ids):
        rows["miners"].append(
            (
                miner_id,
                "0" * 64,
                f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:9000",
                "grpc",
                "RTX 4090",
                24.0,
                1,
                16,
                64.0,
                "cuda",
                "0.75",
                int(slots[i]),
                "eu",
                "[]",
                "[]",
                0.0,
                0.0,
                None,
                registered,
                now,
            )
        )
        last_beat = now - timedelta(hours=5) if offline[i] else now - timedelta(seconds=10)
        lease = last_beat + timedelta(seconds=120)
        rows["miner_status"].append(
            (
                miner_id,
                last_beat,
                registered,
                None,
                last_beat,
                lease,
                int(queue[i]),
                False,
                "[]",
                None,
                None,
                None,
                "bench",
                now,
            )
        )
        if offline[i]:
            rows["presence_intervals"].append((miner_id, registered, lease))
        elif outage[i]:
            gap_start = now - timedelta(hours=float(rng.uniform(10, 20)))
            gap_end = gap_start + timedelta(hours=float(rng.uniform(2, 8)))
            rows["presence_intervals"].append((miner_id, registered, gap_start))
            rows["presence_intervals"].append((miner_id, gap_end, lease))
        else:
            rows["presence_intervals"].append((miner_id, registered, lease))
    per_miner = rng.integers(0, miners, size=feedback)
    outcome_draw = rng.random(feedback)
    slow = bad[per_miner]
    failed = np.where(slow, outcome_draw < 0.3, outcome_draw < 0.03)
    accepted = ~failed & (outcome_draw > 0.97)
    latency = np.where(slow, rng.lognormal(7.3, 0.4, feedback), rng.lognormal(5.7, 0.5, feedback))
    age = rng.uniform(60, 23 * 3600, feedback)
    outcomes = np.where(failed, "failed", np.where(accepted, "accepted", "completed"))
    rows["feedback"] = [
        (
            f"bj-{j}",
            ids[per_miner[j]],
            str(outcomes[j]),
            float(latency[j]),
            None,
            None,
            None,
            None,
            now - timedelta(seconds=float(age[j])),
        )
        for j in range(feedback)
    ]
    return rows


COLUMNS = {
    "miners": [
        "miner_id", "api_key_hash", "addr", "proto", "gpu_name", "gpu_vram_gb", "gpu_count", "cpu_cores",
        "ram_gb", "accel", "price_token_per_ksec", "max_parallel", "region", "tags", "capabilities",
        "trust_successes", "trust_failures", "trust_as_of", "registered_at", "updated_at",
    ],
    "miner_status": [
        "miner_id", "last_beat_at", "online_since", "logged_out_at", "event_at", "lease_expires_at",
        "queue_len", "busy", "current_jobs", "avg_latency_ms", "temp_c", "mem_free_gb", "written_by",
        "updated_at",
    ],
    "presence_intervals": ["miner_id", "started_at", "ended_at"],
    "feedback": [
        "job_id", "miner_id", "outcome", "latency_ms", "duration_ms", "fail_code", "tokens_spent",
        "tenant_id", "created_at",
    ],
}  # fmt: skip
_MODELS: dict[str, Any] = {
    "miners": MinerRow,
    "miner_status": MinerStatusRow,
    "presence_intervals": PresenceIntervalRow,
    "feedback": FeedbackRow,
}
_JSON_COLUMNS = {"tags", "capabilities", "current_jobs"}


async def _check_dedicated(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        foreign = (
            await connection.execute(
                select(func.count()).select_from(MinerRow).where(~MinerRow.miner_id.startswith(BENCH_PREFIX))
            )
        ).scalar_one()
    if foreign:
        sys.exit(
            f"poolhub: this database holds {foreign} miner(s) that are not from a benchmark; "
            "bench sla wipes the miner and SLA tables, so point --database-url at a dedicated database"
        )


async def _wipe(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(
                text(
                    "TRUNCATE sla_violations, sla_metrics, capacity_snapshots, feedback, presence_intervals, "
                    "miner_sessions, miner_status, miners RESTART IDENTITY CASCADE"
                )
            )
        else:
            for model in (
                SlaViolationRow,
                SlaMetricRow,
                CapacitySnapshotRow,
                FeedbackRow,
                PresenceIntervalRow,
            ):
                await connection.execute(delete(model))
            await connection.execute(delete(MinerStatusRow))
            await connection.execute(delete(MinerRow))


async def _load_postgres(url: str, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            for table in ("miners", "miner_status", "presence_intervals", "feedback"):
                await connection.copy_records_to_table(table, records=rows[table], columns=COLUMNS[table])
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def _load_sqlite(engine: AsyncEngine, rows: dict[str, list[tuple[Any, ...]]]) -> None:
    async with engine.begin() as connection:
        for table in ("miners", "miner_status", "presence_intervals", "feedback"):
            columns = COLUMNS[table]
            statement = insert(_MODELS[table])
            batch: list[dict[str, Any]] = []
            for record in rows[table]:
                values = dict(zip(columns, record, strict=True))
                for name in _JSON_COLUMNS & values.keys():
                    values[name] = []
                batch.append(values)
                if len(batch) == 20_000:
                    await connection.execute(statement, batch)
                    batch = []
            if batch:
                await connection.execute(statement, batch)
        await connection.execute(text("ANALYZE"))


def _forecast_series(now: datetime, seed: int) -> list[tuple[datetime, float]]:
    """90 days of hourly utilisation ending an hour before `now`: slow growth and a daily cycle."""
    return synthetic_utilization(
        FORECAST_HISTORY_DAYS * 24,
        base=55.0,
        trend_per_day=0.2,
        amplitude=15.0,
        peak_hour=15,
        noise=2.0,
        seed=seed,
        end=now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1),
    )


async def _seed_forecast_history(engine: AsyncEngine, series: Sequence[tuple[datetime, float]]) -> None:
    rows = [
        {"timestamp": at, **dataclasses.asdict(snapshot_values(pct, 40_000, 10_000))} for at, pct in series
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(CapacitySnapshotRow), rows)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


async def bench_sla(args: argparse.Namespace) -> None:

    fresh_url: str | None = None
    if args.fresh:
        from poolhub.app.tools.hubproc import create_database

        fresh_url = await create_database(args.pg_server, prefix="poolhub_bench_sla")
    settings = settings_for(fresh_url or args.database_url)
    url = settings.database_url
    backend = "PostgreSQL" if make_url(url).get_backend_name() == "postgresql" else "SQLite"
    console.print(f"bench sla on {backend} at {redacted_url(url)}")
    await asyncio.to_thread(upgrade, url)
    container = make_container(settings)
    try:
        engine = await container.get(AsyncEngine)
        await _check_dedicated(engine)
        await _wipe(engine)
        now = datetime.now(UTC)
        started = time.perf_counter()
        rows = _pool_rows(args.miners, args.feedback, now, args.seed)
        built = time.perf_counter() - started
        if backend == "PostgreSQL":
            await _load_postgres(url, rows)
        else:
            await _load_sqlite(engine, rows)
        loaded = time.perf_counter() - started - built
        console.print(
            f"seeded {args.miners:,} miners, {len(rows['presence_intervals']):,} presence intervals, "
            f"{args.feedback:,} feedback rows (built {built:.1f} s, loaded {loaded:.1f} s)"
        )
        del rows

        collections: list[tuple[float, Any]] = []
        for _ in range(args.runs):
            async with container() as scope:
                collect = await scope.get(CollectSla)
                tick = time.perf_counter()
                report = await collect.execute()
                collections.append((time.perf_counter() - tick, report))

        series = _forecast_series(now, args.seed)
        await _seed_forecast_history(engine, series)
        forecast_end_to_end: list[float] = []
        method = ""
        for _ in range(args.forecast_runs):
            async with container() as scope:
                use_case = await scope.get(ForecastCapacity)
                tick = time.perf_counter()
                view = await use_case.execute(FORECAST_HOURS)
                forecast_end_to_end.append(time.perf_counter() - tick)
                method = view.method
        history = [pct for _, pct in series]
        forecast_pure: list[float] = []
        for _ in range(args.forecast_runs):
            tick = time.perf_counter()
            forecast_utilization(history, FORECAST_HOURS)
            forecast_pure.append(time.perf_counter() - tick)
    finally:
        await container.close()
        if fresh_url is not None and not args.keep_database:
            from poolhub.app.tools.hubproc import drop_database

            await drop_database(fresh_url)

    table = Table(
        title=f"SLA collection: {args.miners:,} miners, {args.feedback:,} feedback rows ({backend})"
    )
    for column in ("run", "ms", "miners", "metrics", "opened", "resolved"):
        table.add_column(column, justify="right")
    markdown = [
        "| run | collection ms | miners | metrics recorded | violations opened | violations resolved |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for i, (seconds, report) in enumerate(collections, start=1):
        cells = (
            str(i),
            _ms(seconds),
            f"{report.miners_processed:,}",
            f"{report.metrics_recorded:,}",
            f"{report.violations_opened:,}",
            f"{report.violations_resolved:,}",
        )
        table.add_row(*cells)
        markdown.append("| " + " | ".join(cells) + " |")
    console.print(table)
    worst = max(seconds for seconds, _ in collections)
    median = statistics.median(seconds for seconds, _ in collections)
    e2e = statistics.median(forecast_end_to_end) * 1000
    pure = statistics.median(forecast_pure) * 1000
    summary = [
        "",
        f"N = {args.miners:,} miners, {args.feedback:,} feedback rows in the 24 h window, seed {args.seed}; "
        f"database: {backend}. Each run is one `CollectSla` (the scheduler's job) end to end: set-based "
        "reads, every metric written, the violation lifecycle, one commit.",
        f"- collection: median **{median:.2f} s**, slowest **{worst:.2f} s** "
        f"(target < {COLLECTION_TARGET_SEC:.0f} s on PostgreSQL); the first run opens the violations, "
        "later runs refresh them.",
        f"- capacity forecast, {FORECAST_HOURS} h ahead from {FORECAST_HISTORY_DAYS} days of hourly "
        f"snapshots ({method}): median **{e2e:.0f} ms** with the database read, **{pure:.0f} ms** for the "
        f"model alone (target < {FORECAST_TARGET_MS:.0f} ms), over {args.forecast_runs} runs.",
    ]
    for line in summary[1:]:
        console.print(line)
    if not args.no_report:
        append_report("poolhub bench sla", [*markdown, *summary])
        console.print("appended to docs/BENCHMARKS.md")


def register_bench_sla(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`poolhub bench sla`."""
    parser = kinds.add_parser(
        "sla",
        help="time one SLA collection over a seeded pool and a 168 h capacity forecast "
        "(appends to docs/BENCHMARKS.md); needs a dedicated database: it wipes the miner and SLA tables",
    )
    parser.add_argument("--database-url", help="database to seed (default DATABASE_URL)")
    parser.add_argument(
        "--fresh", action="store_true", help="create a throwaway PostgreSQL database on --pg-server instead"
    )
    parser.add_argument("--pg-server", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep-database", action="store_true", help="with --fresh: do not drop it")
    parser.add_argument("--miners", type=int, default=10_000, help="miners to seed (default 10000)")
    parser.add_argument("--feedback", type=int, default=1_000_000, help="feedback rows (default 1000000)")
    parser.add_argument("--runs", type=int, default=3, help="collections to time (default 3)")
    parser.add_argument("--forecast-runs", type=int, default=5, help="forecasts to time (default 5)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-report", action="store_true", help="do not append to docs/BENCHMARKS.md")
    parser.set_defaults(handler=lambda a: asyncio.run(bench_sla(a)))
