"""The access log: one line per request, with the status the client got (499 when it left first)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from structlog.testing import capture_logs

from tests.integration.conftest import COORDINATOR, Hub, LiveServer, miner_body


async def test_every_request_is_logged_with_its_route_and_status_unknown_paths_too(hub: Hub) -> None:
    with capture_logs() as logs:
        routed = await hub.client.get("/v1/sla/metrics/m-1", headers={"X-Request-Id": "trace-7"})
        unknown = await hub.client.get("/wp-login.php")
        wrong_method = await hub.client.delete("/v1/match")
    assert routed.headers["x-request-id"] == "trace-7"
    assert unknown.headers["x-request-id"] and wrong_method.headers["x-request-id"]
    assert [(e["method"], e["route"], e["status"]) for e in logs if e["event"] == "request"] == [
        ("GET", "/v1/sla/metrics/{miner_id}", routed.status_code),
        ("GET", "/wp-login.php", 404),
        ("DELETE", "/v1/match", 405),
    ]


def _leave_mid_body(url: str, path: str, headers: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(
            f"POST {path} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n"
            f'Content-Length: 1000\r\n{headers}\r\n{{"job_id": '.encode()
        )
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/match", f"Authorization: Bearer {COORDINATOR}\r\n"),
        ("/v1/miners/register", ""),
        ("/v1/feedback", f"Authorization: Bearer {COORDINATOR}\r\n"),
    ],
)
def test_a_client_that_leaves_mid_body_is_logged_as_499_not_as_a_server_error(
    live_server: LiveServer, path: str, headers: str
) -> None:
    with capture_logs() as logs:
        _leave_mid_body(live_server.url, path, headers)
        deadline = time.monotonic() + 5
        while not any(e["event"] == "request" for e in logs) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [(e["route"], e["status"]) for e in logs if e["event"] == "request"] == [(path, 499)]
    assert not [e for e in logs if e["log_level"] == "error"]
    with httpx.Client(base_url=live_server.url) as client:
        assert client.post("/v1/miners/register", json=miner_body("m-after")).status_code == 201
        assert client.get("/v1/health").status_code == 200
