"""A small in-memory stand-in for the coordinator's billing API, for local runs and tests.

Routes (all JSON):
- `POST /api/billing/usage` (header `Idempotency-Key`): stores the event once per key; first time 201
  `{status:"accepted"}`, a repeated key 200 `{status:"duplicate"}` and nothing is counted twice;
  a missing key 400; a resource type on the reject list 422 with the reason.
- `GET /api/billing/metrics?tenant_id=&hours=24`: per-tenant totals of the events whose `usage_end` falls
  within the last `hours`.
- `POST /api/billing/invoice {tenant_id, period_start, period_end}`: an invoice of the tenant's events whose
  `usage_end` lies in [period_start, period_end), one line item per resource type.
- `POST /_stub/control`: change the failure switches at run time (fields left out stay as they are);
  `POST /_stub/reset`; `GET /_stub/state`; `GET /_stub/events`.

When `api_key` is set, the `/api/billing` routes answer 401 unless `Authorization: Bearer <api_key>`.
Every `/api/billing` request is counted, then authorised, then delayed (`delay_ms`), then failed on demand
(`fail_mode`), and only then handled; a request still waiting when `/_stub/reset` arrives is answered 503
and stored nowhere. All state lives on the event loop's thread, so no locks are needed.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.params import HeaderParameter, JSONBody, QueryParameter

from poolhub.app.settings import SettingsError, load_settings

__all__ = ["StubState", "create_stub_app", "run_stub"]

_DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"

DecimalString = Annotated[str, msgspec.Meta(pattern=_DECIMAL_PATTERN, max_length=64)]
Id = Annotated[str, msgspec.Meta(pattern=_ID_PATTERN)]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
FailMode = Literal["status", "timeout"]


class UsageIn(msgspec.Struct, frozen=True):
    """The usage event body of the coordinator contract; decimals must be decimal strings."""

    tenant_id: Id
    event_type: Literal["usage"]
    resource_type: Annotated[str, msgspec.Meta(pattern=r"^[a-z_]{1,32}$")]
    quantity: DecimalString
    unit: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    unit_price: DecimalString
    total_amount: DecimalString
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
    usage_start: AwareDatetime
    usage_end: AwareDatetime
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    job_id: Id | None = None


class InvoiceIn(msgspec.Struct, frozen=True):
    tenant_id: Id
    period_start: AwareDatetime
    period_end: AwareDatetime


class ControlIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Partial update of the switches: a field left out keeps its value, null clears it."""

    fail_status: Annotated[int, msgspec.Meta(ge=100, le=599)] | msgspec.UnsetType | None = msgspec.UNSET
    fail_mode: FailMode | msgspec.UnsetType | None = msgspec.UNSET
    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] | msgspec.UnsetType = msgspec.UNSET
    reject_resource_types: list[str] | msgspec.UnsetType = msgspec.UNSET
    hang_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] | msgspec.UnsetType = msgspec.UNSET


@dataclass(slots=True)
class StoredEvent:
    idempotency_key: str
    received_at: datetime
    usage: UsageIn


@dataclass(slots=True)
class StubState:
    """Everything the stub remembers; tests read it through `GET /_stub/state`."""

    events: dict[str, StoredEvent] = field(default_factory=dict)
    requests: int = 0
    duplicates: int = 0
    fail_status: int | None = None
    fail_mode: FailMode | None = None
    delay_ms: int = 0
    reject_resource_types: set[str] = field(default_factory=set)
    hang_seconds: float = 30.0
    last_request: dict[str, Any] | None = None
    generation: int = 0

    def reset(self) -> None:
        # A request still waiting out a delay from before the reset must not land in the fresh state.
        self.generation += 1
        self.events.clear()
        self.requests = self.duplicates = self.delay_ms = 0
        self.fail_status = self.fail_mode = None
        self.reject_resource_types.clear()
        self.hang_seconds = 30.0
        self.last_request = None

    def switches(self) -> dict[str, Any]:
        return {
            "fail_status": self.fail_status,
            "fail_mode": self.fail_mode,
            "delay_ms": self.delay_ms,
            "reject_resource_types": sorted(self.reject_resource_types),
            "hang_seconds": self.hang_seconds,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "events": len(self.events),
            "distinct_keys": len(self.events),
            "duplicates": self.duplicates,
            "quantity_by_key": {key: event.usage.quantity for key, event in self.events.items()},
            "requests": self.requests,
            "last_request": self.last_request,
            "switches": self.switches(),
        }


def _state(request: Request[Any, Any, Any]) -> StubState:
    stub: StubState = request.app.state.stub
    return stub


def _error(status_code: int, detail: str, extra: Any = None) -> Response[dict[str, Any]]:
    content: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if extra is not None:
        content["extra"] = extra
    return Response(content, status_code=status_code)


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _money(value: Decimal) -> str:
    return format(value, "f")


async def _gate(request: Request[Any, Any, Any]) -> Response[dict[str, Any]] | None:
    """Count, authorise, delay and fail a coordinator request as the switches say; None lets it through."""
    stub = _state(request)
    stub.requests += 1
    authorization = request.headers.get("authorization", "")
    expected_key: str | None = request.app.state.api_key
    authorized = expected_key is None or hmac.compare_digest(
        authorization.encode(), f"Bearer {expected_key}".encode()
    )
    stub.last_request = {
        "method": request.method,
        "path": request.url.path,
        "authorization_scheme": authorization.split(" ", 1)[0] if authorization else None,
        "authorized": authorized,
        "idempotency_key": request.headers.get("idempotency-key"),
        "content_type": request.headers.get("content-type"),
    }
    if not authorized:
        return _error(401, "missing or invalid bearer token")
    generation = stub.generation
    # Read the body before waiting, as a real server would: a client that gives up then cannot stop
    # a slow request from landing, which is the case idempotency keys exist for.
    await request.body()
    if stub.delay_ms:
        await asyncio.sleep(stub.delay_ms / 1000)
    mode = stub.fail_mode or ("status" if stub.fail_status is not None else None)
    if mode == "timeout":
        await asyncio.sleep(stub.hang_seconds)
        return _error(504, "injected timeout")
    if generation != stub.generation:
        return _error(503, "the stub was reset while this request waited")
    if mode == "status":
        status = stub.fail_status or 503
        return _error(status, f"injected failure {status}")
    return None


@post("/usage", status_code=201)
async def record_usage(
    request: Request[Any, Any, Any],
    data: JSONBody[UsageIn],
    idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key")] = None,
) -> Response[dict[str, Any]]:
    stub = _state(request)
    if not idempotency_key:
        return _error(400, "missing Idempotency-Key header", {"header": "Idempotency-Key"})
    if data.resource_type in stub.reject_resource_types:
        return _error(
            422,
            f"resource_type {data.resource_type!r} is not billable for tenant {data.tenant_id!r}",
            {"field": "resource_type"},
        )
    if idempotency_key in stub.events:
        stub.duplicates += 1
        return Response({"status": "duplicate", "idempotency_key": idempotency_key}, status_code=200)
    stub.events[idempotency_key] = StoredEvent(idempotency_key, datetime.now(UTC), data)
    return Response({"status": "accepted", "idempotency_key": idempotency_key}, status_code=201)


def _totals(events: list[UsageIn]) -> dict[str, Any]:
    resources: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"unit": "", "records": 0, "quantity": Decimal(0), "amount": Decimal(0)}
    )
    for usage in events:
        line = resources[usage.resource_type]
        line["unit"] = usage.unit
        line["records"] += 1
        line["quantity"] += Decimal(usage.quantity)
        line["amount"] += Decimal(usage.total_amount)
    total = sum((line["amount"] for line in resources.values()), Decimal(0))
    return {
        "records": len(events),
        "total_amount": _money(total),
        "currency": events[0].currency if events else "USD",
        "resources": {
            name: {**line, "quantity": _money(line["quantity"]), "amount": _money(line["amount"])}
            for name, line in sorted(resources.items())
        },
    }


@get("/metrics")
async def billing_metrics(
    request: Request[Any, Any, Any],
    tenant_id: Annotated[str | None, QueryParameter(pattern=_ID_PATTERN)] = None,
    hours: Annotated[int, QueryParameter(ge=1, le=720)] = 24,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    by_tenant: dict[str, list[UsageIn]] = defaultdict(list)
    for event in _state(request).events.values():
        usage = event.usage
        if usage.usage_end >= since and (tenant_id is None or usage.tenant_id == tenant_id):
            by_tenant[usage.tenant_id].append(usage)
    tenants = [{"tenant_id": tenant, **_totals(events)} for tenant, events in sorted(by_tenant.items())]
    return {
        "tenant_id": tenant_id,
        "hours": hours,
        "period": {"start": _z(since), "end": _z(now)},
        "total_records": sum(t["records"] for t in tenants),
        "tenants": tenants,
    }


@post("/invoice", status_code=201)
async def issue_invoice(
    request: Request[Any, Any, Any], data: JSONBody[InvoiceIn]
) -> Response[dict[str, Any]]:
    if data.period_end <= data.period_start:
        return _error(400, "period_end must be after period_start", {"field": "period_end"})
    events = [
        event.usage
        for event in _state(request).events.values()
        if event.usage.tenant_id == data.tenant_id
        and data.period_start <= event.usage.usage_end < data.period_end
    ]
    totals = _totals(events)
    line_items = [{"resource_type": name, **line} for name, line in totals["resources"].items()]
    invoice = {
        "invoice_id": f"inv-{uuid.uuid4().hex[:16]}",
        "tenant_id": data.tenant_id,
        "period_start": _z(data.period_start),
        "period_end": _z(data.period_end),
        "line_items": line_items,
        "total_amount": totals["total_amount"],
        "currency": totals["currency"],
        "status": "issued",
    }
    return Response(invoice, status_code=201)


@post("/control", status_code=200)
async def control(request: Request[Any, Any, Any], data: JSONBody[ControlIn]) -> dict[str, Any]:
    stub = _state(request)
    if not isinstance(data.fail_status, msgspec.UnsetType):
        stub.fail_status = data.fail_status
    if not isinstance(data.fail_mode, msgspec.UnsetType):
        stub.fail_mode = data.fail_mode
    if not isinstance(data.delay_ms, msgspec.UnsetType):
        stub.delay_ms = data.delay_ms
    if not isinstance(data.reject_resource_types, msgspec.UnsetType):
        stub.reject_resource_types = set(data.reject_resource_types)
    if not isinstance(data.hang_seconds, msgspec.UnsetType):
        stub.hang_seconds = data.hang_seconds
    return stub.switches()


@post("/reset", status_code=200)
async def reset(request: Request[Any, Any, Any]) -> dict[str, Any]:
    stub = _state(request)
    stub.reset()
    return stub.snapshot()


@get("/state")
async def state_snapshot(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return _state(request).snapshot()


@get("/events")
async def stored_events(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    return [
        {
            "idempotency_key": event.idempotency_key,
            "received_at": _z(event.received_at),
            "body": msgspec.to_builtins(event.usage),
        }
        for event in _state(request).events.values()
    ]


def create_stub_app(state: StubState | None = None, api_key: str | None = None) -> Litestar:
    """The stub as a Litestar app; pass `state` to inspect or preset it from the same process."""
    billing = Router(
        path="/api/billing",
        route_handlers=[record_usage, billing_metrics, issue_invoice],
        before_request=_gate,
    )
    stub_control = Router(path="/_stub", route_handlers=[control, reset, state_snapshot, stored_events])
    return Litestar(
        route_handlers=[billing, stub_control],
        state=State({"stub": state if state is not None else StubState(), "api_key": api_key or None}),
        openapi_config=None,
        logging_config=None,
    )


def run_stub(host: str, port: int, api_key: str | None, *, quiet: bool = False) -> None:
    """Serve the stub with uvicorn until interrupted (`poolhub coordinator-stub --port 8011`).

    `quiet` turns off the access log (one line per request slows a benchmark down).
    """
    uvicorn.run(
        create_stub_app(api_key=api_key),
        host=host,
        port=port,
        log_level="warning" if quiet else "info",
        access_log=not quiet,
    )


def _coordinator_stub(args: argparse.Namespace) -> None:

    api_key = args.api_key
    if api_key is None:
        try:
            api_key = load_settings().coordinator_api_key
        except SettingsError as exc:
            sys.exit(f"poolhub: invalid configuration: {exc}")
    print(
        f"poolhub: coordinator billing stub on http://{args.host}:{args.port} "
        f"({'bearer key required' if api_key else 'no key required'}); "
        f"switches: POST /_stub/control, state: GET /_stub/state",
        flush=True,
    )
    run_stub(args.host, args.port, api_key or None, quiet=args.quiet)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    stub = commands.add_parser(
        "coordinator-stub",
        help="run a stand-in for the coordinator's billing API (idempotent on Idempotency-Key)",
        description="The three coordinator billing routes, in memory, with switches to fail or delay "
        "(POST /_stub/control {fail_status, fail_mode, delay_ms, reject_resource_types, hang_seconds}).",
    )
    stub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    stub.add_argument("--port", type=int, default=8011, help="port (default 8011)")
    stub.add_argument(
        "--api-key",
        help="bearer key the stub requires (default COORDINATOR_API_KEY from the environment or .env; "
        "empty: none required)",
    )
    stub.add_argument("--quiet", action="store_true", help="no access log")
    stub.set_defaults(handler=_coordinator_stub)
