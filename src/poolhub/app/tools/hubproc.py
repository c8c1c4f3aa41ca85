"""Start a Pool Hub server in a child process (for benchmarks and the demo) on a fresh database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from poolhub.adapters.db.migrate import upgrade

# Throwaway secrets of a throwaway hub on a throwaway database.
ADMIN_TOKEN = "bench-admin-token"  # noqa: S105
COORDINATOR_SECRET = "bench-coordinator-secret"  # noqa: S105
DEFAULT_PG_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def create_database(server_url: str, prefix: str = "poolhub_bench") -> str:
    """Create an empty PostgreSQL database on the server of `server_url`; returns its SQLAlchemy URL."""
    url = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database="postgres"
    )
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(database_url: str) -> None:
    url = make_url(database_url)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database="postgres"
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await connection.close()


@dataclass
class HubProcess:
    """A `poolhub serve` child process; `stop` sends SIGINT so it flushes and shuts down gracefully."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def start_hub(
    database_url: str,
    *,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    workers: int = 1,
    unset_env: tuple[str, ...] = (),
    cwd: Path | None = None,
) -> HubProcess:
    """`unset_env` drops variables from the child's environment (to configure it through other names);
    `cwd` is where it runs, hence which `.env` it reads."""
    await asyncio.to_thread(upgrade, database_url)
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "POOLHUB_SECRET_KEY": "bench-secret-key",
        "POOLHUB_ADMIN_TOKEN": ADMIN_TOKEN,
        "COORDINATOR_SHARED_SECRET": COORDINATOR_SECRET,
        "LOG_LEVEL": "WARNING",
        # A throwaway hub with short secrets, driven from 127.0.0.1 far past any per-address limit.
        "POOLHUB_ENV": "development",
        "RATE_LIMITS": "off",
        **(extra_env or {}),
    }
    for name in unset_env:
        env.pop(name, None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    # Popen returns at once (no waiting on the child), and argv is ours, not user input.
    process = subprocess.Popen(  # noqa: ASYNC220, S603
        [
            sys.executable,
            "-m",
            "poolhub.app.cli.main",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the hub exited at start-up; see {log_path}")
            try:
                if (await client.get(f"{url}/v1/health")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the hub did not answer within 60 s; see {log_path}")
            await asyncio.sleep(0.2)
    return HubProcess(url, process, log_path, env)


def wait_for_stub(url: str, deadline_s: float = 20.0) -> None:
    """Block until the coordinator stub at `url` answers."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if httpx.get(f"{url}/_stub/state", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the coordinator stub at {url} did not come up")
        time.sleep(0.1)


@contextlib.contextmanager
def coordinator_stub_process(api_key: str, log_path: Path | None = None) -> Iterator[str]:
    """`poolhub coordinator-stub` in a child process on a free port; yields its URL, stops it on exit."""
    port = free_port()
    command = [sys.executable, "-m", "poolhub.app.cli.main", "coordinator-stub", "--port", str(port)]
    command += ["--api-key", api_key] + ([] if log_path else ["--quiet"])
    output = log_path.open("wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603  (our own argv)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_stub(url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
