"""Contract fuzzing: schemathesis (default checks, bounded) against a live `poolhub serve`, once per role."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from poolhub.app.tools.hubproc import (
    ADMIN_TOKEN,
    COORDINATOR_SECRET,
    HubProcess,
    coordinator_stub_process,
    start_hub,
)
from tests.integration.conftest import miner_body

CONFIG = Path(__file__).with_name("schemathesis.toml")
STUB_KEY = "schemathesis-coordinator-key"


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    directory = tmp_path_factory.mktemp("schemathesis")
    with coordinator_stub_process(STUB_KEY) as stub_url:
        hub = asyncio.run(
            start_hub(
                f"sqlite+aiosqlite:///{directory / 'poolhub.db'}",
                log_path=directory / "hub.log",
                extra_env={"COORDINATOR_BILLING_URL": stub_url, "COORDINATOR_API_KEY": STUB_KEY},
            )
        )
        try:
            yield hub
        finally:
            hub.stop()


def _miner_token(url: str) -> str:
    response = httpx.post(f"{url}/v1/miners/register", json=miner_body("schemathesis-miner"), timeout=10)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["session_token"])


ROLES = {
    # Each role's token on the routes it may call; every other route is fuzzed without a valid token by
    # another role's run, so all operations are covered.
    "operator": r"^/(sla/|v1/miners/?$|v1/health|v1/metrics|livez|readyz)",
    "coordinator": r"^/v1/(match|feedback)$",
    "miner": r"^/v1/miners/(register|heartbeat|update|lease/renew|logout)$",
}


@pytest.mark.parametrize("role", list(ROLES))
def test_schemathesis_finds_nothing(live_hub: HubProcess, role: str, tmp_path: Path) -> None:
    token = {"operator": ADMIN_TOKEN, "coordinator": COORDINATOR_SECRET}.get(role) or _miner_token(
        live_hub.url
    )
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{live_hub.url}/schema/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--include-path-regex",
        ROLES[role],
        "--workers",
        "1",
        "--seed",
        "12",
        "--no-color",
        "--request-timeout",
        "10",
    ]
    run = subprocess.run(  # noqa: S603  (our own argv)
        command,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
