"""`poolhub bench billing`: seed N pending usage lines, sync them all to the coordinator stub, time it.

The lines carry a miner id of their own (`bench-<run>`), the sync is limited to that miner, and the lines
are deleted afterwards (unless `--keep`), so a database in use is left as it was. The stub runs in a child
process by default: the real coordinator is another process, and on a 2-core machine a stub sharing this
process's interpreter lock would measure lock contention rather than the sync.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import uvicorn
from sqlalchemy import delete, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from poolhub.adapters.billing import CoordinatorBillingClient, make_http_client
from poolhub.adapters.db.billing_repositories import SqlUsageLedger
from poolhub.adapters.db.engine import make_engine, make_session_factory
from poolhub.adapters.db.migrate import upgrade
from poolhub.adapters.db.models import UsageRecordRow
from poolhub.adapters.db.uow import SqlUnitOfWork
from poolhub.adapters.http_transport import DEFAULT_TRANSPORT, TRANSPORTS
from poolhub.adapters.randomness import SystemRandomSource
from poolhub.adapters.system import SystemClock
from poolhub.app.settings import SettingsError, load_settings
from poolhub.app.tools.coordinator_stub import create_stub_app
from poolhub.app.tools.hubproc import coordinator_stub_process, wait_for_stub
from poolhub.app.tools.report import append_report
from poolhub.domain.billing import (
    DEFAULT_UNIT_PRICES,
    BackoffPolicy,
    ResourceType,
    UnitPrices,
    UsageRecord,
    amount,
    unit_of,
)
from poolhub.domain.use_cases.derive_api_calls import ApiCallsPolicy, DeriveApiCalls
from poolhub.domain.use_cases.sync_usage import SyncLimits, SyncReport, SyncRequest, SyncUsage

SEED_CHUNK = 5000
PRICES = UnitPrices.parse(DEFAULT_UNIT_PRICES)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BenchResult:
    records: int
    seed_seconds: float
    sync_seconds: float
    report: SyncReport
    delivered: int
    synced_in_ledger: int
    sync_cpu_seconds: float
    transport: str

    @property
    def cpu_per_line_us(self) -> float:
        return self.sync_cpu_seconds / max(self.records, 1) * 1e6

    @property
    def rate(self) -> float:
        return self.report.records_sent / self.sync_seconds if self.sync_seconds else 0.0


@contextlib.contextmanager
def _stub_thread(api_key: str) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_stub_app(api_key=api_key), log_level="warning", access_log=False, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_stub(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def bench_records(run_id: str, miner_id: str, count: int, now: datetime) -> Iterator[UsageRecord]:
    """Realistic job lines: ten tenants, compute and GPU hours, quantities from 0.001 to 1 hour."""
    for number in range(count):
        resource = ResourceType.COMPUTE_HOURS if number % 2 == 0 else ResourceType.GPU_HOURS
        quantity = Decimal(number % 1000 + 1) / 1000
        price = PRICES.price_of(resource)
        end = now - timedelta(seconds=count - number)
        yield UsageRecord(
            idempotency_key=f"bench:{run_id}:{number}",
            tenant_id=f"bench-tenant-{number % 10}",
            miner_id=miner_id,
            resource_type=str(resource),
            unit=unit_of(resource),
            quantity=quantity,
            unit_price=price,
            amount=amount(quantity, price),
            currency=PRICES.currency,
            usage_start=end - timedelta(minutes=1),
            usage_end=end,
            job_id=f"bench-job-{number}",
            metadata={"bench": run_id},
        )


async def seed(factory: async_sessionmaker[AsyncSession], records: Iterator[UsageRecord]) -> int:
    added = 0
    chunk: list[UsageRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == SEED_CHUNK:
            added += await _add(factory, chunk)
            chunk = []
    if chunk:
        added += await _add(factory, chunk)
    return added


async def _add(factory: async_sessionmaker[AsyncSession], chunk: list[UsageRecord]) -> int:
    async with factory() as session:
        added = await SqlUsageLedger(session).add(chunk)
        await session.commit()
    return added


async def _timed(step: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await step()
    return result, time.perf_counter() - started


async def run_bench(
    database_url: str,
    stub_url: str,
    *,
    api_key: str,
    records: int,
    concurrency: int,
    batch_size: int,
    keep: bool,
    transport: str = DEFAULT_TRANSPORT,
) -> BenchResult:
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    run_id = uuid.uuid4().hex[:8]
    miner_id = f"bench-{run_id}"
    http = make_http_client(
        stub_url,
        api_key,
        max_connections=concurrency,
        transport_kind=transport,  # type: ignore[arg-type]  # checked against TRANSPORTS by main()
    )
    try:
        added, seed_seconds = await _timed(
            lambda: seed(factory, bench_records(run_id, miner_id, records, datetime.now(UTC)))
        )
        print(f"seeded {added:,} pending lines in {seed_seconds:.1f} s", flush=True)
        async with factory() as session:
            ledger = SqlUsageLedger(session)
            uow = SqlUnitOfWork(session)
            clock = SystemClock()
            sync = SyncUsage(
                ledger,
                CoordinatorBillingClient(http),
                uow,
                clock,
                SystemRandomSource(),
                BackoffPolicy(),
                SyncLimits(batch_size=batch_size, concurrency=concurrency, breaker_threshold=concurrency),
                DeriveApiCalls(ledger, uow, clock, PRICES, ApiCallsPolicy()),
            )
            cpu_before = time.process_time()
            report, sync_seconds = await _timed(
                lambda: sync.execute(SyncRequest(miner_id=miner_id, derive_api_calls=False))
            )
            sync_cpu = time.process_time() - cpu_before
        state: dict[str, Any] = (await http.get("/_stub/state")).json()
        delivered = sum(1 for key in state["quantity_by_key"] if key.startswith(f"bench:{run_id}:"))
        async with factory() as session:
            synced = await session.scalar(
                select(func.count())
                .select_from(UsageRecordRow)
                .where(UsageRecordRow.miner_id == miner_id, UsageRecordRow.status == "synced")
            )
            if not keep:
                await session.execute(delete(UsageRecordRow).where(UsageRecordRow.miner_id == miner_id))
                await session.commit()
        await http.post("/_stub/reset")  # the next run's state read stays small
        return BenchResult(
            records, seed_seconds, sync_seconds, report, delivered, int(synced or 0), sync_cpu, transport
        )
    finally:
        await http.aclose()
        await engine.dispose()


def _run(coroutine: Awaitable[T]) -> tuple[T, str]:
    """Run on uvloop when it is installed (as `poolhub serve` does under uvicorn), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coroutine), "asyncio"  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine), "uvloop"  # type: ignore[arg-type]


def _transports(text: str) -> list[str]:
    kinds = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(kinds) - set(TRANSPORTS))
    if not kinds or unknown:
        sys.exit(f"poolhub: --transports takes a comma-separated list of {', '.join(TRANSPORTS)}")
    return kinds


def main(args: argparse.Namespace) -> None:
    if args.records < 1 or args.concurrency < 1 or args.batch_size < 1 or args.rounds < 1:
        sys.exit("poolhub: --records, --concurrency, --batch-size and --rounds must be >= 1")
    kinds = _transports(args.transports)
    try:
        database_url = args.database_url or load_settings().database_url
    except SettingsError as exc:
        sys.exit(f"poolhub: invalid configuration: {exc}")
    upgrade(database_url)
    backend = "PostgreSQL" if make_url(database_url).get_backend_name() == "postgresql" else "SQLite"
    if args.stub_url:
        stub: contextlib.AbstractContextManager[str] = contextlib.nullcontext(args.stub_url)
        stub_label = "given URL"
    elif args.stub_mode == "thread":
        stub, stub_label = _stub_thread(args.api_key), "thread of this process"
    else:
        stub, stub_label = coordinator_stub_process(args.api_key), "child process"
    results: list[BenchResult] = []
    loop_name = ""
    with stub as stub_url:
        # Rounds interleave the transports, so that a change in the machine's load hits each about equally.
        for _ in range(args.rounds):
            for kind in kinds:
                result, loop_name = _run(
                    run_bench(
                        database_url,
                        stub_url,
                        api_key=args.api_key,
                        records=args.records,
                        concurrency=args.concurrency,
                        batch_size=args.batch_size,
                        keep=args.keep,
                        transport=kind,
                    )
                )
                report = result.report
                print(
                    f"[{kind}] synced {report.records_sent:,} of {result.records:,} lines in "
                    f"{result.sync_seconds:.1f} s = {result.rate:,.0f} records/s (failed "
                    f"{report.records_failed}, rejected {report.records_rejected}); the stub holds "
                    f"{result.delivered:,}; the ledger marks {result.synced_in_ledger:,} synced; this "
                    f"process used {result.sync_cpu_seconds:.1f} s of CPU "
                    f"({result.cpu_per_line_us:.0f} µs per line)",
                    flush=True,
                )
                results.append(result)
    if args.no_report:
        return
    append_report("poolhub bench billing", _report_lines(results, backend, stub_label, args, loop_name))


def _report_lines(
    results: list[BenchResult], backend: str, stub_label: str, args: argparse.Namespace, loop_name: str
) -> list[str]:
    lines = [
        "| transport | records | database | stub | in flight | batch | seed s | sync s | records/s "
        "| CPU µs/line | at the stub |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r.transport} | {r.records:,} | {backend} | {stub_label} | {args.concurrency} | "
        f"{args.batch_size} | {r.seed_seconds:.1f} | {r.sync_seconds:.1f} | {r.rate:,.0f} | "
        f"{r.cpu_per_line_us:.0f} | {r.delivered:,} |"
        for r in results
    ]
    lines.append("")
    for kind in dict.fromkeys(r.transport for r in results):
        runs = [r for r in results if r.transport == kind]
        best = min(runs, key=lambda r: r.sync_seconds)
        failed = sum(r.report.records_failed for r in runs)
        rejected = sum(r.report.records_rejected for r in runs)
        lines.append(
            f"- {kind}: one full sync of {best.records:,} pending lines in **{best.sync_seconds:.1f} s** at "
            f"best of {len(runs)} (target < 60 s for 100,000); {failed} failed, {rejected} rejected; "
            f"the syncing process used {statistics.median(r.cpu_per_line_us for r in runs):.0f} µs of CPU "
            f"per line (median)."
        )
    lines.append(f"- event loop: {loop_name}; transports interleaved round by round.")
    return lines


def register_bench_billing(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`poolhub bench billing`."""
    bench = kinds.add_parser(
        "billing",
        help="seed N pending usage lines and time one full sync to the coordinator stub",
        description="Seeds N pending ledger lines (under a miner id of their own, removed afterwards) into "
        "the database, syncs them to the stub and appends the result to docs/BENCHMARKS.md.",
    )
    bench.add_argument("--records", type=int, default=100_000, help="ledger lines to sync (default 100000)")
    bench.add_argument("--database-url", help="database to use (default DATABASE_URL); it is migrated first")
    bench.add_argument(
        "--stub-url", help="a running coordinator stub (default: start one on a free port of 127.0.0.1)"
    )
    bench.add_argument(
        "--stub-mode",
        choices=("process", "thread"),
        default="process",
        help="run the started stub in a child process (default) or in a thread of this process",
    )
    bench.add_argument("--api-key", default="bench-coordinator-api-key", help="the stub's bearer key")
    bench.add_argument("--concurrency", type=int, default=32, help="sends in flight (default 32)")
    bench.add_argument("--batch-size", type=int, default=1000, help="lines per batch (default 1000)")
    bench.add_argument(
        "--transports",
        default=DEFAULT_TRANSPORT,
        help=f"comma-separated transports to measure, interleaved: {', '.join(TRANSPORTS)} "
        f"(default {DEFAULT_TRANSPORT}, the service's)",
    )
    bench.add_argument("--rounds", type=int, default=1, help="syncs per transport (default 1)")
    bench.add_argument("--keep", action="store_true", help="keep the seeded lines in the database")
    bench.add_argument("--no-report", action="store_true", help="do not append to docs/BENCHMARKS.md")
    bench.set_defaults(handler=main)
