"""Run the coordinator billing stub on 127.0.0.1 in a background thread (no pytest needed).

with CoordinatorStubServer(api_key="k") as stub:
    client = make_http_client(stub.base_url, "k")
    stub.control(fail_status=503)
    assert stub.snapshot()["events"] == 0
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from poolhub.app.tools.coordinator_stub import StubState, create_stub_app

__all__ = ["CoordinatorStubServer"]


class CoordinatorStubServer:
    """The stub served by uvicorn on a free port of 127.0.0.1, started by `start()` and stopped by `stop()`.

    The port is bound here before uvicorn starts, so there is no race for it. `state` is the live
    StubState (read it freely; change it through `control()` so changes happen on the server's loop).
    """

    def __init__(self, *, api_key: str | None = None, startup_timeout_s: float = 10.0) -> None:
        self.api_key = api_key
        self.state = StubState()
        self._startup_timeout_s = startup_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> CoordinatorStubServer:
        if self._server is not None:
            raise RuntimeError("the coordinator stub is already running")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_stub_app(self.state, api_key=self.api_key),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="coordinator-stub", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError("the coordinator stub did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout_s)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout_s)

    def __enter__(self) -> CoordinatorStubServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, self.base_url + path, json=body, timeout=5.0)
        response.raise_for_status()
        return response.json()

    def control(self, **switches: Any) -> dict[str, Any]:
        """Set switches: fail_status, fail_mode ("status"|"timeout"), delay_ms, reject_resource_types."""
        result: dict[str, Any] = self._request("POST", "/_stub/control", switches)
        return result

    def reset(self) -> None:
        """Forget every event and counter and clear the switches."""
        self._request("POST", "/_stub/reset")

    def snapshot(self) -> dict[str, Any]:
        """`GET /_stub/state`: events, distinct_keys, duplicates, quantity_by_key, requests, last_request."""
        result: dict[str, Any] = self._request("GET", "/_stub/state")
        return result

    def events(self) -> list[dict[str, Any]]:
        """`GET /_stub/events`: each stored event with its idempotency key and the body as received."""
        result: list[dict[str, Any]] = self._request("GET", "/_stub/events")
        return result
