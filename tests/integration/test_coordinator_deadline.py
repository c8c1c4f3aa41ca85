"""A coordinator that trickles its answer cannot hold a sync: the request is cut off at the total deadline
(`COORDINATOR_TIMEOUT_SECONDS`) and the ledger line stays pending for the next run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.integration.conftest import ADMIN, Hub, bearer, started_hub, test_settings

OPERATOR = bearer(ADMIN)
DEADLINE_S = 1.5
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'


class TricklingCoordinator:
    """A real socket server on 127.0.0.1 that reads a request, then sends its answer one byte per second."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes_sent = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.lower().split(b"\r\n")
            length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            self.requests += 1
            for byte in ANSWER:
                writer.write(bytes([byte]))
                await writer.drain()
                self.bytes_sent += 1
                await asyncio.sleep(1.0)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the hub hung up: what this test wants
        finally:
            writer.close()


@pytest.fixture
async def trickling() -> AsyncIterator[tuple[TricklingCoordinator, str]]:
    coordinator = TricklingCoordinator()
    listener = await asyncio.start_server(coordinator.serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield coordinator, f"http://127.0.0.1:{port}"
    finally:
        listener.close()


async def test_a_trickling_coordinator_is_cut_off_at_the_deadline_and_the_line_stays_pending(
    clean_db: str, trickling: tuple[TricklingCoordinator, str]
) -> None:
    coordinator, url = trickling
    settings = test_settings(
        clean_db,
        coordinator_billing_url=url,
        coordinator_timeout_seconds=DEADLINE_S,
        billing_sync_interval_hours=10_000.0,  # only the sync this test asks for
    )
    async with started_hub(settings) as hub:
        await record_line(hub)

        started = time.monotonic()
        answer = await hub.client.post("/sla/billing/sync", json={}, headers=OPERATOR)
        elapsed = time.monotonic() - started

        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert (result["records_sent"], result["records_failed"], result["records_pending"]) == (0, 1, 1)
        assert elapsed < DEADLINE_S + 1.5, f"the sync took {elapsed:.1f} s"
        assert coordinator.requests == 1
        assert 1 <= coordinator.bytes_sent < len(ANSWER)  # it was mid-answer when the hub stopped waiting

        lines = (await hub.client.get("/sla/billing/records", headers=OPERATOR)).json()
        [line] = lines
        assert line["status"] == "pending"
        assert "timed out" in line["last_error"]
        assert f"{DEADLINE_S:g} s deadline" in line["last_error"]


async def record_line(hub: Hub) -> None:
    response = await hub.client.post(
        "/sla/billing/usage/record",
        json={"tenant_id": "acme", "resource_type": "gpu_hours", "quantity": "1.5"},
        headers=OPERATOR,
    )
    assert response.status_code == 201, response.text
