"""Billing routes (operator): the usage report, sync, manual usage records, the ledger, invoices.

The billing routes under /sla/billing live here; the SLA and capacity routes have their own controller.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any

from dishka.integrations.litestar import FromDishka, inject
from litestar import Controller, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, QueryParameter

from poolhub.app.http.auth import Role, require
from poolhub.app.http.schemas.billing import (
    InvoiceCreate,
    LedgerEntryRead,
    RequeueCreate,
    RequeueResultRead,
    SyncCreate,
    SyncResultRead,
    UsagePeriod,
    UsageRecordCreate,
    UsageRecordRead,
    UsageReportRead,
    UsageTotalRead,
)
from poolhub.app.http.schemas.common import Limit, Offset, Problem, page_response
from poolhub.app.metrics import Metrics
from poolhub.app.runtime.billing_jobs import run_sync
from poolhub.domain.billing import LedgerEntry, LedgerStatus, UsageLine
from poolhub.domain.use_cases.billing_queries import (
    GenerateInvoice,
    ListLedgerEntries,
    Requeue,
    RequeueRejected,
    UsageQuery,
    UsageReport,
)
from poolhub.domain.use_cases.record_usage import ManualUsage, RecordManualUsage
from poolhub.domain.use_cases.sync_usage import SyncRequest, SyncUsage

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$(?!\n)"
IdQuery = Annotated[
    str | None, QueryParameter(pattern=ID_PATTERN, description="1-64 characters of [A-Za-z0-9._:-]")
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        required=False,
        pattern=r"^[A-Za-z0-9._:-]{1,128}$(?!\n)",
        description="optional, 1-128 characters of [A-Za-z0-9._:-]: the same key with the same usage "
        "returns the line already recorded (200) instead of adding another; with different usage, 409",
    ),
]


_AMOUNT_EXP = Decimal("1E-8")


def _money(value: Decimal) -> str:
    """A decimal string, never in exponent notation."""
    return format(value, "f")


def _quantity(value: Decimal) -> str:
    """A quantity without trailing zeros: 2.0 → "2", 0.500 → "0.5"."""
    return format(value.normalize(), "f") if value else "0"


def _amount(value: Decimal) -> str:
    """An amount with its 8 decimal places: "1.25000000"."""
    return format(value.quantize(_AMOUNT_EXP), "f")


def _record_fields(entry: LedgerEntry) -> dict[str, Any]:
    record = entry.record
    return {
        "id": entry.id,
        "idempotency_key": record.idempotency_key,
        "tenant_id": record.tenant_id,
        "miner_id": record.miner_id,
        "resource_type": record.resource_type,
        "unit": record.unit,
        "quantity": _quantity(record.quantity),
        "unit_price": _money(record.unit_price),
        "amount": _amount(record.amount),
        "currency": record.currency,
        "usage_start": record.usage_start,
        "usage_end": record.usage_end,
        "job_id": record.job_id,
        "metadata": dict(record.metadata),
        "status": entry.status.value,
        "created_at": entry.created_at,
    }


def _entry_read(entry: LedgerEntry) -> LedgerEntryRead:
    return LedgerEntryRead(
        **_record_fields(entry),
        attempts=entry.attempts,
        next_attempt_at=entry.next_attempt_at,
        last_error=entry.last_error,
        synced_at=entry.synced_at,
    )


def _total_read(line: UsageLine) -> UsageTotalRead:
    return UsageTotalRead(
        tenant_id=line.tenant_id,
        miner_id=line.miner_id,
        resource_type=line.resource_type,
        unit=line.unit,
        quantity=_quantity(line.quantity),
        amount=_amount(line.amount),
        currency=line.currency,
        synced_quantity=_quantity(line.synced_quantity),
        pending_quantity=_quantity(line.pending_quantity),
        rejected_quantity=_quantity(line.rejected_quantity),
    )


OPERATOR_SECURITY: list[dict[str, list[str]]] = [{"BearerToken": []}]


class BillingController(Controller):
    path = "/sla/billing"
    tags = ["billing"]  # noqa: RUF012  (Litestar reads it as a class attribute)
    guards = [require(Role.OPERATOR)]  # type: ignore[list-item]  # noqa: RUF012
    security = OPERATOR_SECURITY

    @get(
        "/usage",
        summary="Usage from the ledger by tenant, miner and resource type, beside the coordinator's own",
        description="Lines whose usage ended in the last `hours` (1-720, default 24). `quantity` and "
        "`amount` cover every line; `synced_quantity` + `pending_quantity` + `rejected_quantity` split "
        "the quantity by delivery state. `coordinator` is the coordinator's `GET /api/billing/metrics` "
        "answer for the same tenant and hours, or null when it fails. Decimals are strings; amounts "
        "carry 8 decimal places.",
    )
    @inject
    async def usage(
        self,
        use_case: FromDishka[UsageReport],
        tenant_id: IdQuery = None,
        miner_id: IdQuery = None,
        hours: Annotated[int, QueryParameter(ge=1, le=720, description="hours back, 1-720")] = 24,
    ) -> UsageReportRead:
        view = await use_case.execute(UsageQuery(hours=hours, tenant_id=tenant_id, miner_id=miner_id))
        return UsageReportRead(
            period=UsagePeriod(start=view.period_start, end=view.period_end),
            totals=[_total_read(line) for line in view.lines],
            coordinator=dict(view.coordinator) if view.coordinator is not None else None,
        )

    @post(
        "/sync",
        status_code=200,
        summary="Send every pending ledger line to the coordinator now",
        description="Ignores the retry backoff (which paces only the scheduler). First derives the "
        "api_calls lines of closed hours. Optional filters: `miner_id` (lines of that miner) and "
        "`hours_back` (1-720: lines whose usage ended in the last hours). `records_sent`, "
        "`records_failed` (left pending for a later retry) and `records_rejected` count this run; "
        "`records_pending` counts the lines of the selection still pending afterwards. The run stops "
        "early when the coordinator keeps failing; the rest stays pending. A 401, 403, 404 or 3xx from "
        "the coordinator means the integration is misconfigured: the run stops at once, nothing is "
        "rejected, and `billing_blocked` says why (also in `GET /sla/status`) until a run gets through. "
        "Lines are claimed before they are sent, so concurrent runs never send the same line at once.",
    )
    @inject
    async def sync(
        self,
        use_case: FromDishka[SyncUsage],
        metrics: FromDishka[Metrics],
        data: JSONBody[SyncCreate | None] = None,
    ) -> SyncResultRead:
        body = data or SyncCreate()
        report = await run_sync(
            use_case, metrics, SyncRequest(miner_id=body.miner_id, hours_back=body.hours_back)
        )
        return SyncResultRead(
            records_sent=report.records_sent,
            records_failed=report.records_failed,
            records_pending=report.records_pending,
            records_rejected=report.records_rejected,
            billing_blocked=report.billing_blocked,
        )

    @post(
        "/requeue",
        status_code=200,
        summary="Put rejected ledger lines back to pending, keys unchanged",
        description="After the coordinator or its rules were fixed: the selected rejected lines "
        "(`tenant_id`, `resource_type`, usage ended in [`since`, `until`)) become pending and due at "
        "once, with their idempotency keys, so the coordinator still counts each once. Answers how many.",
    )
    @inject
    async def requeue(
        self, use_case: FromDishka[RequeueRejected], data: JSONBody[RequeueCreate | None] = None
    ) -> RequeueResultRead:
        body = data or RequeueCreate()
        count = await use_case.execute(
            Requeue(
                tenant_id=body.tenant_id, resource_type=body.resource_type, since=body.since, until=body.until
            )
        )
        return RequeueResultRead(records_requeued=count)

    @post(
        "/usage/record",
        status_code=201,
        summary="Record a usage line by hand; it is pending until the next sync",
        description="`unit_price` defaults to the configured price of the resource type (a type without "
        "one needs it explicitly). The line is keyed `manual:<Idempotency-Key header>` when the header "
        "is given (a repeat answers 200 with the stored line), else `manual:<random id>`.",
        responses={
            200: ResponseSpec(
                generate_examples=False,
                data_container=UsageRecordRead,
                description="the line already recorded under the same Idempotency-Key",
            ),
            409: ResponseSpec(
                generate_examples=False,
                data_container=Problem,
                description="Idempotency-Key reused for other usage",
            ),
        },
    )
    @inject
    async def record(
        self,
        data: JSONBody[UsageRecordCreate],
        use_case: FromDishka[RecordManualUsage],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[UsageRecordRead]:
        recorded = await use_case.execute(
            ManualUsage(
                tenant_id=data.tenant_id,
                resource_type=data.resource_type,
                quantity=data.quantity,
                unit_price=data.unit_price,
                job_id=data.job_id,
                metadata=data.metadata,
                request_key=idempotency_key,
            )
        )
        return Response(
            UsageRecordRead(**_record_fields(recorded.entry)),
            status_code=201 if recorded.created else 200,
        )

    @get(
        "/records",
        summary="Ledger lines, newest first, with their delivery state (rejections carry the reason)",
    )
    @inject
    async def records(
        self,
        use_case: FromDishka[ListLedgerEntries],
        status: Annotated[LedgerStatus | None, QueryParameter(description="pending|synced|rejected")] = None,
        tenant_id: IdQuery = None,
        miner_id: IdQuery = None,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Response[list[LedgerEntryRead]]:
        page = await use_case.execute(
            status=status, tenant_id=tenant_id, miner_id=miner_id, offset=offset, limit=limit
        )
        return page_response([_entry_read(entry) for entry in page.entries], page.total)

    @post(
        "/invoice/generate",
        status_code=200,
        summary="Ask the coordinator for an invoice and return its answer",
        description="`period_end` must be after `period_start` (else 400). When the coordinator fails "
        "or refuses, 502 with a detail saying why.",
        responses={
            502: ResponseSpec(
                generate_examples=False,
                data_container=Problem,
                description="the coordinator failed or refused",
            ),
        },
    )
    @inject
    async def invoice(
        self, data: JSONBody[InvoiceCreate], use_case: FromDishka[GenerateInvoice]
    ) -> Mapping[str, object]:
        return await use_case.execute(data.tenant_id, data.period_start, data.period_end)
