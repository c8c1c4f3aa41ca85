"""GET /console: the operator's web console, a static page over the JSON API, plus the few operator routes
under /console/api that the public API lacks (search, overview, explain without recording a match).

The page sends the operator token as a bearer header from sessionStorage (never a cookie, so there is
nothing for another site to ride on), and every response under /console carries a strict CSP.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from dishka.integrations.litestar import FromDishka, inject
from litestar import Controller, Request, Response, Router, get, post
from litestar.datastructures import CacheControlHeader, MutableScopeHeaders
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from poolhub.app.http.auth import Role, require
from poolhub.app.http.console.counters import MatchRateWindow
from poolhub.app.http.console.schemas import (
    AmountsByStatus,
    BillingLineRead,
    BillingOverview,
    BillingSummaryRead,
    ConsoleFeatures,
    ConsoleMinerPage,
    ConsoleMinerRead,
    ConsoleSession,
    ExplainCreate,
    ExplainRead,
    MatchActivityRead,
    MinerCounts,
    OverviewRead,
    SlaOverview,
    SlotCounts,
    ViolationCount,
)
from poolhub.app.http.controllers.match import to_match_query, to_match_response
from poolhub.app.http.controllers.miners import to_miner_read
from poolhub.app.http.controllers.sla import to_violation_read
from poolhub.app.http.schemas.common import Limit, Offset, page_response
from poolhub.app.http.schemas.match import MatchRequest
from poolhub.app.http.schemas.sla import SeverityName, SlaViolationRead, ViolationTypeName
from poolhub.domain.billing import LedgerStatus
from poolhub.domain.use_cases.console_queries import (
    ExplainMiner,
    GetMiner,
    MinerRow,
    MinerSearch,
    MinerSort,
    OverviewPool,
    SearchMiners,
    StatusAmounts,
    SummarizeBilling,
)
from poolhub.domain.use_cases.sla_queries import ListSlaViolations

STATIC_DIR = Path(__file__).parent / "static"
INDEX_HTML = (STATIC_DIR / "index.html").read_bytes()
# The overview's billing covers the widest window the API allows.
OVERVIEW_BILLING_HOURS = 720
AMOUNT_EXP = Decimal("1E-8")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

OPERATOR: list[dict[str, list[str]]] = [{"BearerToken": []}]
OptionalId = Annotated[
    str | None,
    QueryParameter(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="1-64 characters of [A-Za-z0-9._:-]"),
]
ShortText = Annotated[str | None, QueryParameter(max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]


def security_headers(app: ASGIApp) -> ASGIApp:
    """Set the strict headers on every answer under /console, errors included (a guard's 401 too)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableScopeHeaders.from_message(message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


def _amount(value: Decimal) -> str:
    return format(value.quantize(AMOUNT_EXP), "f")


def _quantity(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def _by_status(currency: str, split: StatusAmounts) -> AmountsByStatus:
    zero = Decimal(0)
    return AmountsByStatus(
        currency=currency,
        pending_amount=_amount(split.amount.get(LedgerStatus.PENDING, zero)),
        synced_amount=_amount(split.amount.get(LedgerStatus.SYNCED, zero)),
        rejected_amount=_amount(split.amount.get(LedgerStatus.REJECTED, zero)),
    )


def _miner(row: MinerRow) -> ConsoleMinerRead:
    return ConsoleMinerRead(
        miner=to_miner_read(row.view), load=round(row.load, 4), open_violations=row.open_violations
    )


@get("/", include_in_schema=False, cache_control=CacheControlHeader(no_cache=True))
async def console_page() -> Response[bytes]:
    """The page shell; everything it shows comes from the JSON API once the operator signed in."""
    return Response(INDEX_HTML, media_type="text/html; charset=utf-8")


class ConsoleApiController(Controller):
    path = "/api"
    tags = ["console"]  # noqa: RUF012  (Litestar reads it as a class attribute)
    guards = [require(Role.OPERATOR)]  # type: ignore[list-item]  # noqa: RUF012
    security = OPERATOR

    @get("/session", summary="Check the operator token (the console's sign-in)")
    async def session(self) -> ConsoleSession:
        return ConsoleSession(role=Role.OPERATOR.value)

    @get("/features", summary="Which optional routes this build serves")
    async def features(self, request: Request[Any, Any, Any]) -> ConsoleFeatures:
        paths = {route.path for route in request.app.routes}
        return ConsoleFeatures(
            requeue="/sla/billing/requeue" in paths, livez="/livez" in paths, readyz="/readyz" in paths
        )

    @get("/overview", summary="The pool at a glance: miners, slots, match rate and p99, SLA, billing")
    @inject
    async def overview(
        self,
        pool: FromDishka[OverviewPool],
        billing: FromDishka[SummarizeBilling],
        window: FromDishka[MatchRateWindow],
    ) -> OverviewRead:
        facts = await pool.execute()
        summary = await billing.execute(hours=OVERVIEW_BILLING_HOURS)
        activity = window.read()
        return OverviewRead(
            generated_at=datetime.now(UTC),
            miners=MinerCounts(registered=facts.registered, online=facts.online),
            slots=SlotCounts(
                total=facts.total_slots, used=facts.used_slots, free=facts.total_slots - facts.used_slots
            ),
            matching=MatchActivityRead(
                requests_total=activity.requests_total,
                window_sec=activity.window_sec,
                rate_per_sec=activity.rate_per_sec,
                p99_ms=activity.p99_ms,
            ),
            sla=SlaOverview(
                status=facts.sla_status,
                open_violations=[
                    ViolationCount(violation_type=kind, severity=severity, count=count)
                    for (kind, severity), count in sorted(facts.open_violations.items())
                ],
            ),
            billing=BillingOverview(
                period_hours=OVERVIEW_BILLING_HOURS,
                totals=[_by_status(c, split) for c, split in sorted(summary.totals.items())],
                last_synced_at=summary.last_synced_at,
            ),
        )

    @get("/miners", summary="Miners filtered, searched, sorted and paged on the server")
    @inject
    async def miners(
        self,
        use_case: FromDishka[SearchMiners],
        search: ShortText = None,
        online: Annotated[bool | None, QueryParameter(required=False)] = None,
        region: ShortText = None,
        accel: ShortText = None,
        has_violation: Annotated[bool | None, QueryParameter(required=False)] = None,
        sort: Annotated[Literal["miner_id", "trust", "load"], QueryParameter(required=False)] = "miner_id",
        order: Annotated[Literal["asc", "desc"], QueryParameter(required=False)] = "asc",
        offset: Offset = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=500, required=False)] = 25,
    ) -> Response[ConsoleMinerPage]:
        page = await use_case.execute(
            MinerSearch(
                search=search or None,
                online=online,
                region=region or None,
                accel=accel or None,
                has_violation=has_violation,
                sort=MinerSort(sort),
                descending=order == "desc",
                offset=offset,
                limit=limit,
            )
        )
        body = ConsoleMinerPage(
            items=[_miner(row) for row in page.items],
            total=page.total,
            regions=list(page.regions),
            accels=list(page.accels),
        )
        return Response(body, headers={"X-Total-Count": str(page.total)})

    @get("/miners/{miner_id:str}", summary="One miner with its load and open violations; 404 if unknown")
    @inject
    async def miner(
        self,
        miner_id: Annotated[str, PathParameter(pattern=r"^[A-Za-z0-9._:-]{1,64}$")],
        use_case: FromDishka[GetMiner],
    ) -> ConsoleMinerRead:
        return _miner(await use_case.execute(miner_id))

    @post(
        "/explain",
        status_code=200,
        summary="Why was this miner not chosen? The matcher on a sample job; records and bills nothing",
    )
    @inject
    async def explain(self, data: JSONBody[ExplainCreate], use_case: FromDishka[ExplainMiner]) -> ExplainRead:
        request = MatchRequest(
            job_id="console-explain",
            requirements=data.requirements,
            hints=data.hints,
            top_k=1,
            explain_miner=data.miner_id,
        )
        result = use_case.execute(to_match_query(request))
        answer = to_match_response(result)
        assert answer.miner_explanation is not None  # explain_miner was set
        return ExplainRead(
            explain=answer.explain,
            eligible_count=result.eligible,
            miner_explanation=answer.miner_explanation,
        )

    @get("/violations", summary="Violations, newest first, filtered by state, type, severity or miner")
    @inject
    async def violations(
        self,
        use_case: FromDishka[ListSlaViolations],
        resolved: Annotated[bool, QueryParameter(required=False)] = False,
        violation_type: Annotated[ViolationTypeName | None, QueryParameter(required=False)] = None,
        severity: Annotated[SeverityName | None, QueryParameter(required=False)] = None,
        miner_id: OptionalId = None,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Response[list[SlaViolationRead]]:
        page = await use_case.execute(
            miner_id=miner_id,
            resolved=resolved,
            offset=offset,
            limit=limit,
            violation_type=violation_type,
            severity=severity,
        )
        return page_response([to_violation_read(v) for v in page.items], page.total)

    @get("/billing", summary="Usage by tenant and resource type with amounts split by delivery state")
    @inject
    async def billing(
        self,
        use_case: FromDishka[SummarizeBilling],
        hours: Annotated[int, QueryParameter(ge=1, le=720, required=False)] = 24,
        tenant_id: OptionalId = None,
    ) -> BillingSummaryRead:
        summary = await use_case.execute(hours=hours, tenant_id=tenant_id)
        zero = Decimal(0)
        lines = []
        for line in summary.lines:
            q, a = line.split.quantity, line.split.amount
            lines.append(
                BillingLineRead(
                    tenant_id=line.tenant_id,
                    resource_type=line.resource_type,
                    unit=line.unit,
                    currency=line.currency,
                    quantity=_quantity(sum(q.values(), zero)),
                    amount=_amount(sum(a.values(), zero)),
                    pending_quantity=_quantity(q.get(LedgerStatus.PENDING, zero)),
                    synced_quantity=_quantity(q.get(LedgerStatus.SYNCED, zero)),
                    rejected_quantity=_quantity(q.get(LedgerStatus.REJECTED, zero)),
                    pending_amount=_amount(a.get(LedgerStatus.PENDING, zero)),
                    synced_amount=_amount(a.get(LedgerStatus.SYNCED, zero)),
                    rejected_amount=_amount(a.get(LedgerStatus.REJECTED, zero)),
                )
            )
        return BillingSummaryRead(
            period_start=summary.period_start,
            period_end=summary.period_end,
            lines=lines,
            totals=[_by_status(c, split) for c, split in sorted(summary.totals.items())],
            last_synced_at=summary.last_synced_at,
        )


def console_router() -> Router:
    """Everything under /console: the page, its static files and its API, all with the strict headers."""
    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        name="console-static",
        cache_control=CacheControlHeader(no_cache=True),
        include_in_schema=False,
    )
    return Router(
        path="/console",
        route_handlers=[console_page, ConsoleApiController, static],
        middleware=[security_headers],
    )
