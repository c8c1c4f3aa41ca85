"""`poolhub simulate`: a fleet of miners keeping their leases, and a coordinator dispatching jobs to them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from rich.console import Console
from rich.table import Table
from websockets.asyncio.client import ClientConnection, connect

from poolhub.app.tools.fleet import MinerProfile, draw_outcome, job_request, miner_profiles

console = Console(stderr=True)


@dataclass
class SimulationStats:
    registered: int = 0
    beats: int = 0
    beat_errors: int = 0
    jobs: int = 0
    matched: int = 0
    unmatched: int = 0
    completed: int = 0
    failed: int = 0
    feedback_errors: int = 0
    match_errors: int = 0
    match_latency_ms: list[float] = field(default_factory=list)
    jobs_by_miner: Counter[str] = field(default_factory=Counter)


@dataclass
class SimulatedMiner:
    profile: MinerProfile
    token: str
    running: int = 0

    @property
    def miner_id(self) -> str:
        return str(self.profile.body["miner_id"])


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    url: str
    miners: int
    duration: float
    jobs_per_sec: float
    seed: int = 1
    http: bool = False
    beat_interval: float | None = None
    flaky_share: float = 0.1
    time_scale: float = 0.1
    coordinator_token: str = ""
    tenants: int = 5
    progress: bool = True


class Simulation:
    """Drives the hub only through its public API, as real miners and a real coordinator would."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.stats = SimulationStats()
        self._rng = random.Random(config.seed)
        self._miners: dict[str, SimulatedMiner] = {}
        self._client = httpx.AsyncClient(
            base_url=config.url,
            timeout=30,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._stop = asyncio.Event()
        self._job_tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> SimulationStats:
        try:
            await self._register_all()
            beat_every = self.config.beat_interval or self._next_heartbeat
            tasks = [asyncio.create_task(self._keep_lease(m, beat_every)) for m in self._miners.values()]
            tasks.append(asyncio.create_task(self._coordinate()))
            if self.config.progress:
                tasks.append(asyncio.create_task(self._report_progress()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.duration)
            self._stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._job_tasks:
                await asyncio.wait(self._job_tasks, timeout=30)
        finally:
            await self._client.aclose()
        if self.config.progress:
            print(file=sys.stderr)
        return self.stats

    def stop(self) -> None:
        """End a run early (the console screenshots keep a pool working until they are taken)."""
        self._stop.set()

    async def _register_all(self) -> None:
        profiles = miner_profiles(self.config.miners, self.config.seed, flaky_share=self.config.flaky_share)
        self._next_heartbeat = 30.0
        limiter = asyncio.Semaphore(32)

        async def register(profile: MinerProfile) -> None:
            async with limiter:
                response = await self._client.post("/v1/miners/register", json=profile.body)
            if response.status_code == 429:
                # The whole fleet registers from this one address: the hub's per-address limit must allow it.
                raise SystemExit(
                    "poolhub simulate: the hub rate-limits registrations from this address; start it with "
                    "RATE_LIMITS=off (or a register limit above --miners per minute) for a simulation"
                )
            response.raise_for_status()
            answer = response.json()
            self._next_heartbeat = float(answer["next_heartbeat_sec"])
            miner = SimulatedMiner(profile, answer["session_token"])
            self._miners[miner.miner_id] = miner
            self.stats.registered += 1

        await asyncio.gather(*(register(p) for p in profiles))

    def _beat(self, miner: SimulatedMiner) -> dict[str, object]:
        return {"queue_len": miner.running, "avg_latency_ms": round(miner.profile.latency_ms, 1)}

    async def _keep_lease(self, miner: SimulatedMiner, every: float) -> None:
        # Spread the fleet's beats over the interval instead of beating in lockstep.
        await self._sleep(self._rng.uniform(0, every))
        if self.config.http:
            await self._keep_lease_http(miner, every)
        else:
            await self._keep_lease_ws(miner, every)

    async def _keep_lease_http(self, miner: SimulatedMiner, every: float) -> None:
        headers = {"Authorization": f"Bearer {miner.token}"}
        while not self._stop.is_set():
            try:
                response = await self._client.post(
                    "/v1/miners/heartbeat", json=self._beat(miner), headers=headers
                )
                if response.status_code == 200:
                    self.stats.beats += 1
                else:
                    self.stats.beat_errors += 1
            except httpx.HTTPError:
                self.stats.beat_errors += 1
            await self._sleep(every)

    async def _keep_lease_ws(self, miner: SimulatedMiner, every: float) -> None:
        ws_url = self.config.url.replace("http", "ws", 1) + "/v1/miners/heartbeat"
        socket: ClientConnection | None = None
        try:
            socket = await connect(ws_url, additional_headers={"Authorization": f"Bearer {miner.token}"})
            while not self._stop.is_set():
                await socket.send(json.dumps(self._beat(miner)))
                ack = json.loads(await socket.recv())
                if ack.get("type") == "ack":
                    self.stats.beats += 1
                else:
                    self.stats.beat_errors += 1
                await self._sleep(every)
        except (TimeoutError, OSError, ValueError) as exc:
            self.stats.beat_errors += 1
            console.print(f"[red]heartbeat socket of {miner.miner_id} failed: {exc}[/red]")
        except Exception:  # websockets' ConnectionClosed and friends: the miner is gone
            self.stats.beat_errors += 1
        finally:
            if socket is not None:
                await socket.close()

    async def _coordinate(self) -> None:
        interval = 1.0 / self.config.jobs_per_sec
        headers = {"Authorization": f"Bearer {self.config.coordinator_token}"}
        next_at = time.monotonic()
        while not self._stop.is_set():
            number = self.stats.jobs
            self.stats.jobs += 1
            request = job_request(self._rng, number, tenants=self.config.tenants, top_k=3)
            started = time.perf_counter()
            try:
                response = await self._client.post("/v1/match", json=request, headers=headers)
            except httpx.HTTPError:
                self.stats.match_errors += 1
            else:
                self.stats.match_latency_ms.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    self.stats.match_errors += 1
                else:
                    self._dispatch(request, response.json())
            next_at += interval
            await self._sleep(max(0.0, next_at - time.monotonic()))

    def _dispatch(self, request: dict[str, object], answer: dict[str, object]) -> None:
        candidates = answer.get("candidates") or []
        assert isinstance(candidates, list)
        if not candidates:
            self.stats.unmatched += 1
            return
        miner = self._miners.get(str(candidates[0]["miner_id"]))
        if miner is None:
            self.stats.unmatched += 1
            return
        self.stats.matched += 1
        task = asyncio.create_task(self._run_job(miner, str(request["job_id"]), str(request["tenant_id"])))
        self._job_tasks.add(task)
        task.add_done_callback(self._job_tasks.discard)

    async def _run_job(self, miner: SimulatedMiner, job_id: str, tenant_id: str) -> None:
        outcome = draw_outcome(miner.profile, self._rng)
        miner.running += 1
        self.stats.jobs_by_miner[miner.miner_id] += 1
        await self._feedback(
            {"job_id": job_id, "miner_id": miner.miner_id, "outcome": "accepted", "tenant_id": tenant_id}
        )
        await asyncio.sleep(outcome.duration_ms / 1000 * self.config.time_scale)
        miner.running -= 1
        body: dict[str, object] = {
            "job_id": job_id,
            "miner_id": miner.miner_id,
            "tenant_id": tenant_id,
            "latency_ms": round(outcome.latency_ms, 1),
            "duration_ms": round(outcome.duration_ms, 1),
        }
        if outcome.completed:
            body["outcome"] = "completed"
            self.stats.completed += 1
        else:
            body |= {"outcome": "failed", "fail_code": "SIMULATED"}
            self.stats.failed += 1
        await self._feedback(body)

    async def _feedback(self, body: dict[str, object]) -> None:
        try:
            response = await self._client.post(
                "/v1/feedback",
                json=body,
                headers={"Authorization": f"Bearer {self.config.coordinator_token}"},
            )
            if response.status_code not in (200, 201):
                self.stats.feedback_errors += 1
        except httpx.HTTPError:
            self.stats.feedback_errors += 1

    async def _report_progress(self) -> None:
        started = time.monotonic()
        last_jobs = 0
        while not self._stop.is_set():
            await self._sleep(1.0)
            online = "?"
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                online = str((await self._client.get("/v1/health")).json()["online_miners"])
            s = self.stats
            rate = s.jobs - last_jobs
            last_jobs = s.jobs
            errors = s.beat_errors + s.match_errors + s.feedback_errors
            sys.stderr.write(
                f"\r[{time.monotonic() - started:5.0f}s] jobs/s {rate:4d}  matched {s.matched:6d}  "
                f"unmatched {s.unmatched:5d}  completed {s.completed:6d}  failed {s.failed:5d}  "
                f"miners online {online:>6}  beats {s.beats:7d}  errors {errors}"
            )
            sys.stderr.flush()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)


def summary_table(stats: SimulationStats, config: SimulationConfig) -> Table:
    table = Table(title=f"simulation: {config.miners} miners, {config.duration:.0f} s, seed {config.seed}")
    table.add_column("what")
    table.add_column("count", justify="right")
    latencies = sorted(stats.match_latency_ms)
    p99 = latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")
    rows = [
        ("miners registered", stats.registered),
        ("heartbeats acknowledged", stats.beats),
        ("jobs requested", stats.jobs),
        ("jobs matched", stats.matched),
        ("jobs with no candidate", stats.unmatched),
        ("jobs completed", stats.completed),
        ("jobs failed", stats.failed),
        (
            "errors (beat / match / feedback)",
            f"{stats.beat_errors} / {stats.match_errors} / {stats.feedback_errors}",
        ),
        ("match round trip p99 (ms)", f"{p99:.1f}"),
        ("distinct miners used", len(stats.jobs_by_miner)),
    ]
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    return table


def _simulate(args: argparse.Namespace) -> None:
    from poolhub.app.settings import load_settings

    token = args.coordinator_token or load_settings().coordinator_shared_secret
    config = SimulationConfig(
        url=args.url.rstrip("/"),
        miners=args.miners,
        duration=args.duration,
        jobs_per_sec=args.jobs_per_sec,
        seed=args.seed,
        http=args.http,
        beat_interval=args.beat_interval,
        flaky_share=args.flaky_share,
        time_scale=args.time_scale,
        coordinator_token=token,
    )
    stats = asyncio.run(Simulation(config).run())
    Console().print(summary_table(stats, config))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate", help="simulated miners (WebSocket or HTTP beats) and a coordinator dispatching jobs"
    )
    simulate.add_argument(
        "--url", default="http://127.0.0.1:8210", help="the hub (default http://127.0.0.1:8210)"
    )
    simulate.add_argument("--miners", type=int, default=50)
    simulate.add_argument("--duration", type=float, default=60, help="seconds to run")
    simulate.add_argument("--jobs-per-sec", type=float, default=10)
    simulate.add_argument("--seed", type=int, default=1, help="same seed, same fleet and job sequence")
    simulate.add_argument("--http", action="store_true", help="heartbeat over HTTP instead of WebSocket")
    simulate.add_argument(
        "--beat-interval", type=float, help="seconds between beats (default: the hub's advice)"
    )
    simulate.add_argument(
        "--flaky-share", type=float, default=0.1, help="share of slow, failure-prone miners"
    )
    simulate.add_argument(
        "--time-scale", type=float, default=0.1, help="job durations are multiplied by this (default 0.1)"
    )
    simulate.add_argument(
        "--coordinator-token", help="default: COORDINATOR_SHARED_SECRET from the environment/.env"
    )
    simulate.set_defaults(handler=_simulate)
