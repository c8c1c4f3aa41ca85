"""`poolhub demo` (`make demo`): a hub, the coordinator stub and a simulated pool for about a minute, then
what an operator would look at. Every process it starts, it stops."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from poolhub.app.tools.hubproc import ADMIN_TOKEN, COORDINATOR_SECRET, coordinator_stub_process, start_hub
from poolhub.app.tools.simulate import Simulation, SimulationConfig, summary_table

console = Console()


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


async def _report(url: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=60) as client:
        collected = (await client.post("/sla/metrics/collect")).json()
        synced = (await client.post("/sla/billing/sync", json={})).json()
        status = (await client.get("/sla/status")).json()
        violations = (await client.get("/sla/violations", params={"resolved": "false"})).json()
        miners = (await client.get("/v1/miners", params={"limit": 500})).json()
        forecast = (await client.get("/sla/capacity/forecast", params={"hours_ahead": 24})).json()
        plan = (await client.get("/sla/capacity/recommendations")).json()
        usage = (await client.get("/sla/billing/usage", params={"hours": 24})).json()

    console.rule("What an operator sees")
    console.print(
        f"SLA collection: {collected['miners_processed']} miners, {collected['metrics_recorded']} metrics, "
        f"{collected['violations_opened']} violations opened. Billing sync: {synced['records_sent']} records "
        f"sent, {synced['records_failed']} failed, {synced['records_pending']} pending."
    )
    console.print(
        f"SLA status: [bold]{status['status']}[/bold], {status['active_violations']} open violations"
    )
    console.print(
        _table(
            "open SLA violations",
            ["miner", "type", "severity", "value", "threshold"],
            [
                [
                    str(v["miner_id"] or "(pool)"),
                    v["violation_type"],
                    v["severity"],
                    f"{v['metric_value']:.1f}",
                    f"{v['threshold']:.1f}",
                ]
                for v in violations[:12]
            ],
        )
    )
    ranked = sorted(miners, key=lambda m: (-m["trust_score"], m["miner_id"]))
    judged = [m for m in ranked if m["trust_samples"] > 0]  # least trusted among miners with a record
    trust_rows = [
        [
            m["miner_id"],
            f"{m['trust_score']:.3f}",
            f"{m['trust_samples']:.1f}",
            m["gpu_name"] or "",
            m["region"] or "",
        ]
        for m in ranked[:5] + judged[-5:]
    ]
    console.print(
        _table(
            "five most and five least trusted miners",
            ["miner", "trust", "evidence", "gpu", "region"],
            trust_rows,
        )
    )
    peak = forecast.get("peak") or {}
    console.print(
        f"Capacity: {forecast['current_utilization_pct']:.1f} % used now; forecast ({forecast['method']}, "
        f"{forecast['history_points']} hourly points) peaks at {peak.get('utilization_pct', 0):.1f} % "
        f"within {forecast['forecast_horizon_hours']} h; state [bold]{plan['current_state']}[/bold]"
        + "".join(f"\n  - {r['action']} {r['quantity']}: {r['reason']}" for r in plan["recommendations"])
    )
    per_tenant: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for total in usage["totals"]:
        per_tenant[total["tenant_id"]][total["resource_type"]] += Decimal(total["amount"])
    console.print(
        _table(
            "usage billed per tenant (USD)",
            ["tenant", "gpu_hours", "compute_hours", "api_calls", "total"],
            [
                [
                    tenant,
                    *(str(amounts.get(r, Decimal(0))) for r in ("gpu_hours", "compute_hours", "api_calls")),
                    str(sum(amounts.values(), Decimal(0))),
                ]
                for tenant, amounts in sorted(per_tenant.items())
            ],
        )
    )
    console.print("(api_calls are billed per closed hour, so a one-minute demo shows none yet)")
    coordinator = usage.get("coordinator")
    console.print(f"The coordinator's own billing metrics: {'reachable' if coordinator else 'unreachable'}")


async def _collect_every(url: str, seconds: float) -> None:
    """SLA collections while the pool works, so capacity snapshots see it busy (the scheduler's interval
    is minutes)."""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        while True:
            await asyncio.sleep(seconds)
            await client.post("/sla/metrics/collect")


async def _demo(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="poolhub-demo-"))
    hub = None
    with coordinator_stub_process("demo-key", log_path=workdir / "stub.log") as stub_url:
        console.print(f"coordinator stub at {stub_url}; logs and database in {workdir}")
        try:
            hub = await start_hub(
                f"sqlite+aiosqlite:///{workdir / 'poolhub.db'}",
                log_path=workdir / "hub.log",
                extra_env={
                    "COORDINATOR_BILLING_URL": stub_url,
                    "COORDINATOR_API_KEY": "demo-key",
                    "SLA_MIN_SAMPLES": "5",
                    "LOG_LEVEL": "WARNING",
                },
            )
            console.print(f"hub on {hub.url}; simulating {args.miners} miners for {args.duration:.0f} s …")
            config = SimulationConfig(
                url=hub.url,
                miners=args.miners,
                duration=args.duration,
                jobs_per_sec=args.jobs_per_sec,
                seed=args.seed,
                beat_interval=5.0,
                flaky_share=0.2,
                time_scale=0.05,
                coordinator_token=COORDINATOR_SECRET,
                progress=sys.stderr.isatty(),
            )
            collecting = asyncio.create_task(_collect_every(hub.url, 15.0))
            try:
                stats = await Simulation(config).run()
            finally:
                collecting.cancel()
            console.print(summary_table(stats, config))
            await _report(hub.url)
        finally:
            if hub is not None:
                hub.stop()
    console.print("stopped the hub and the coordinator stub")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo", help="hub + coordinator stub + simulated pool for about a minute, then the operator's view"
    )
    demo.add_argument("--duration", type=float, default=60)
    demo.add_argument("--miners", type=int, default=40)
    demo.add_argument("--jobs-per-sec", type=float, default=15)
    demo.add_argument("--seed", type=int, default=42)
    demo.set_defaults(handler=lambda a: asyncio.run(_demo(a)))
