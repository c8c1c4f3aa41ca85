"""`poolhub seed-capacity`: weeks of synthetic hourly snapshots (trend + daily cycle), so the capacity
forecast and the recommendations have something to say."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from rich.console import Console

from poolhub.adapters.db.engine import redacted_url
from poolhub.adapters.db.migrate import upgrade
from poolhub.app.ioc.container import make_container
from poolhub.app.tools.bench_sla import settings_for, snapshot_values, synthetic_utilization
from poolhub.domain.ports import CapacityRepository, UnitOfWork
from poolhub.domain.use_cases.capacity_planning import ForecastCapacity, RecommendCapacity

console = Console()


async def seed_capacity(args: argparse.Namespace) -> None:
    settings = settings_for(args.database_url)
    await asyncio.to_thread(upgrade, settings.database_url)
    now = datetime.now(UTC)
    series = synthetic_utilization(
        args.days * 24,
        base=args.base,
        trend_per_day=args.trend_per_day,
        amplitude=args.amplitude,
        peak_hour=args.peak_hour,
        noise=args.noise,
        seed=args.seed,
        end=now.replace(minute=0, second=0, microsecond=0),
    )
    miners = max(1, args.slots // 4)
    container = make_container(settings)
    try:
        async with container() as scope:
            repository = await scope.get(CapacityRepository)
            if args.replace:
                removed = await repository.delete_snapshots()
                console.print(f"removed {removed:,} earlier snapshots")
            count = await repository.add_snapshots(
                [(at, snapshot_values(pct, args.slots, miners)) for at, pct in series]
            )
            await (await scope.get(UnitOfWork)).commit()
        console.print(
            f"seeded {count:,} hourly snapshots over {args.days} days "
            f"into {redacted_url(settings.database_url)}"
        )
        async with container() as scope:
            view = await (await scope.get(ForecastCapacity)).execute(None)
            plan = await (await scope.get(RecommendCapacity)).execute()
    finally:
        await container.close()
    crossing = view.hours_until_threshold
    console.print(
        f"forecast ({view.method}, {view.history_points} hourly points): "
        f"now {view.current_utilization_pct:.1f} %, "
        f"peak {view.peak.utilization_pct:.1f} % at {view.peak.timestamp:%Y-%m-%d %H:00} UTC, "
        + (
            f"{view.alert_threshold_pct:.0f} % reached in {crossing} h"
            if crossing is not None
            else f"{view.alert_threshold_pct:.0f} % not reached in {view.forecast_horizon_hours} h"
        )
    )
    console.print(f"recommendations: {plan.current_state}")
    for item in plan.recommendations:
        console.print(f"  - {item.action} {item.quantity} ({item.priority}): {item.reason}")


def register_seed_capacity(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "seed-capacity",
        help="load synthetic hourly capacity snapshots (trend + daily cycle) so the forecast has history",
    )
    parser.add_argument("--database-url", help="database to seed (default DATABASE_URL)")
    parser.add_argument("--days", type=_positive_int, default=21, help="days of hourly history (default 21)")
    parser.add_argument("--base", type=float, default=55.0, help="utilisation %% now, before the cycle (55)")
    parser.add_argument(
        "--trend-per-day", type=float, default=2.0, help="utilisation points gained per day (default 2.0)"
    )
    parser.add_argument("--amplitude", type=float, default=15.0, help="half the daily swing, in points (15)")
    parser.add_argument("--peak-hour", type=int, default=15, choices=range(24), help="busiest UTC hour (15)")
    parser.add_argument("--noise", type=float, default=2.0, help="standard deviation of the noise (2)")
    parser.add_argument("--slots", type=_positive_int, default=400, help="total slots of the pool (400)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--replace", action="store_true", help="delete every earlier snapshot first")
    parser.set_defaults(handler=lambda a: asyncio.run(seed_capacity(a)))


def _positive_int(text_value: str) -> int:
    value = int(text_value)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
