"""`poolhub console-shots` (`make console-shots`): a demo pool (hub, coordinator stub, simulated miners and
three weeks of capacity history), then Chromium through Playwright signs in to /console and saves a
screenshot of each page to docs/console/. The browser tests start the same pool."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from rich.console import Console

from poolhub.app.tools.fleet import miner_profiles
from poolhub.app.tools.hubproc import (
    ADMIN_TOKEN,
    COORDINATOR_SECRET,
    HubProcess,
    coordinator_stub_process,
    start_hub,
)
from poolhub.app.tools.seed_capacity import seed_capacity
from poolhub.app.tools.simulate import Simulation, SimulationConfig

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Playwright, ViewportSize

console = Console(stderr=True)

CHROMIUM = "/usr/bin/chromium"
STUB_KEY = "console-demo-key"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
# The pool works until the caller is done; this bounds it should the caller never finish.
SIMULATION_LIMIT_SEC = 900.0
COLLECT_EVERY_SEC = 2.5


@dataclass(frozen=True, slots=True)
class DemoPool:
    url: str
    admin_token: str
    stub_url: str
    hub: HubProcess


async def _seed_history(database_url: str, days: int) -> None:
    await seed_capacity(
        argparse.Namespace(
            database_url=database_url,
            days=days,
            base=62.0,
            trend_per_day=2.0,
            amplitude=14.0,
            peak_hour=15,
            noise=2.0,
            slots=400,
            seed=7,
            replace=False,
        )
    )


async def _retire_some(url: str, count: int) -> None:
    """A few miners that registered and logged out, so the directory shows offline ones too."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for profile in miner_profiles(count, seed=99, prefix="retired"):
            answer = (await client.post("/v1/miners/register", json=profile.body)).json()
            headers = {"Authorization": f"Bearer {answer['session_token']}"}
            await client.post("/v1/miners/logout", headers=headers)


@contextlib.asynccontextmanager
async def demo_pool(
    workdir: Path,
    *,
    database_url: str | None = None,
    miners: int = 30,
    warmup: float = 10.0,
    history_days: int = 21,
) -> AsyncIterator[DemoPool]:
    """A running hub with a pool that keeps working while the caller looks at it: matches, feedback,
    trust, pending usage, SLA metrics and violations, and `history_days` of capacity history."""
    database_url = database_url or f"sqlite+aiosqlite:///{workdir / 'poolhub.db'}"
    hub: HubProcess | None = None
    with coordinator_stub_process(STUB_KEY, log_path=workdir / "stub.log") as stub_url:
        try:
            hub = await start_hub(
                database_url,
                log_path=workdir / "hub.log",
                extra_env={
                    "COORDINATOR_BILLING_URL": stub_url,
                    "COORDINATOR_API_KEY": STUB_KEY,
                    "SLA_MIN_SAMPLES": "5",
                    # Driven by hand here: no scheduled sync may deliver usage behind the caller's back.
                    "BILLING_SYNC_INTERVAL_HOURS": "24",
                    "SLA_COLLECTION_INTERVAL_SECONDS": "3600",
                    "RATE_LIMITS": "off",
                },
            )
            await _seed_history(database_url, history_days)
            simulation = Simulation(
                SimulationConfig(
                    url=hub.url,
                    miners=miners,
                    duration=SIMULATION_LIMIT_SEC,
                    jobs_per_sec=12,
                    seed=42,
                    beat_interval=2.0,
                    flaky_share=0.3,
                    # Jobs last seconds, not milliseconds, so the pool's slots are visibly in use.
                    time_scale=4.0,
                    coordinator_token=COORDINATOR_SECRET,
                    progress=False,
                )
            )
            working = asyncio.create_task(simulation.run())
            try:
                await _warm_up(hub.url, warmup)
                yield DemoPool(hub.url, ADMIN_TOKEN, stub_url, hub)
            finally:
                simulation.stop()
                await working
        finally:
            if hub is not None:
                hub.stop()


async def _warm_up(url: str, seconds: float) -> None:
    """Let the pool work, collecting SLA metrics every few seconds so the charts have several points."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=60) as client:
        await asyncio.sleep(2.0)
        await _retire_some(url, 3)
        rounds = max(2, int(seconds // COLLECT_EVERY_SEC))
        for _ in range(rounds):
            await asyncio.sleep(COLLECT_EVERY_SEC)
            (await client.post("/sla/metrics/collect")).raise_for_status()


async def launch_chromium() -> tuple[Playwright, Browser]:
    from playwright.async_api import async_playwright

    playwright = await async_playwright().start()
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    return playwright, browser


async def sign_in(page: Page, url: str, token: str) -> None:
    await page.goto(f"{url}/console")
    await page.fill("#token", token)
    await page.click("#signin-form button[type=submit]")
    await page.wait_for_selector("#overview .card")


async def _billing_with_every_state(pool: DemoPool) -> None:
    """A line the coordinator refuses for good (its type is unknown there), so the billing page shows
    pending, synced and rejected amounts once "Sync now" ran."""
    async with httpx.AsyncClient(timeout=30) as client:
        control = await client.post(
            f"{pool.stub_url}/_stub/control", json={"reject_resource_types": ["storage_gb_hours"]}
        )
        control.raise_for_status()
        recorded = await client.post(
            f"{pool.url}/sla/billing/usage/record",
            json={
                "tenant_id": "tenant-2",
                "resource_type": "storage_gb_hours",
                "quantity": "120",
                "unit_price": "0.002",
            },
            headers={"Authorization": f"Bearer {pool.admin_token}"},
        )
        recorded.raise_for_status()


async def capture(pool: DemoPool, out: Path) -> list[Path]:
    """Sign in and save one screenshot per page (and the overview at phone width) into `out`."""
    from playwright.async_api import expect

    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    pool_url, token = pool.url, pool.admin_token
    playwright, browser = await launch_chromium()
    shots: list[Path] = []
    try:
        page = await browser.new_page(viewport=DESKTOP)
        await sign_in(page, pool_url, token)

        async def shot(name: str, hash_: str, ready: str) -> None:
            await page.goto(f"{pool_url}/console#{hash_}")
            await page.wait_for_selector(ready)
            await page.wait_for_timeout(300)
            path = out / f"{name}.png"
            await page.screenshot(path=str(path), full_page=True)
            shots.append(path)

        await shot("overview", "/overview", "#overview .card")
        # The match rate needs two looks at the counters; the page takes the second within 1.2 s.
        await expect(page.locator("#ov-rate")).not_to_have_text("…")
        await page.screenshot(path=str(out / "overview.png"), full_page=True)
        await shot("miners", "/miners?sort=trust&order=desc", "#miner-filters")
        first = await page.get_attribute("#view tbody a", "href")
        assert first is not None
        await shot("miner", first.lstrip("#"), "#miner-charts")
        await page.fill("#explain-form input[name=min_vram_gb]", "48")
        await page.click("#explain-form button[type=submit]")
        await page.wait_for_selector("#explain-result p")
        path = out / "miner.png"
        await page.screenshot(path=str(path), full_page=True)
        await shot("capacity", "/capacity", "#capacity-chart .uplot")
        await shot("violations", "/violations", "#violation-filters")
        await _billing_with_every_state(pool)
        await shot("billing", "/billing?hours=24", "#sync-now")
        await page.click("#sync-now")
        await page.wait_for_selector("text=Last action from this tab")
        await page.wait_for_timeout(2500)  # the pool keeps working: let some new usage be pending
        await page.goto(f"{pool_url}/console#/billing?hours=1")
        await page.wait_for_selector("#sync-now")
        await page.screenshot(path=str(out / "billing.png"), full_page=True)

        phone = await browser.new_page(viewport=PHONE, device_scale_factor=2)
        await sign_in(phone, pool_url, token)
        path = out / "overview-phone.png"
        await phone.screenshot(path=str(path), full_page=True)
        shots.append(path)
    finally:
        await browser.close()
        await playwright.stop()
    return shots


async def _console_shots(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="poolhub-console-"))
    try:
        console.print(f"starting a demo pool (logs in {workdir}) …")
        async with demo_pool(workdir, miners=args.miners, warmup=args.warmup) as pool:
            shots = await capture(pool, Path(args.out))
        for path in shots:
            console.print(f"wrote {path}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "console-shots", help="start a demo pool and save screenshots of /console to docs/console/"
    )
    parser.add_argument("--out", default="docs/console", help="folder for the PNGs (docs/console)")
    parser.add_argument("--miners", type=int, default=30)
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of work before the shots (15)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> None:
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"poolhub: {CHROMIUM} is missing: apt-get install -y chromium")
    asyncio.run(_console_shots(args))
