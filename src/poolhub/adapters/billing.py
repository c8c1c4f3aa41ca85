"""CoordinatorBillingClient: the coordinator's billing API over httpx, behind the BillingGateway port."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import structlog

from poolhub.adapters.http_transport import (
    DEFAULT_TRANSPORT,
    DeadlineClient,
    DeadlineExceeded,
    TransportKind,
    make_transport,
    tls_context,
)
from poolhub.domain.billing import (
    BillingMisconfiguredError,
    BillingPermanentError,
    BillingRetryableError,
    SyncOutcome,
    UsageRecord,
    classify_status,
)
from poolhub.domain.ports import BillingGateway
from poolhub.domain.utc import rfc3339

__all__ = ["CoordinatorBillingClient", "make_http_client", "usage_body"]

USAGE_PATH = "/api/billing/usage"
METRICS_PATH = "/api/billing/metrics"
INVOICE_PATH = "/api/billing/invoice"
_EXCERPT_CHARS = 300

_log = structlog.get_logger(__name__)


def make_http_client(
    base_url: str,
    api_key: str,
    timeout_s: float = 10.0,
    *,
    connect_timeout_s: float = 3.0,
    max_connections: int = 64,
    ca_bundle: str | None = None,
    transport_kind: TransportKind = DEFAULT_TRANSPORT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A pooled keep-alive client for the coordinator; the caller owns it and must `aclose()` it.

    `timeout_s` is the total deadline of each request, from connecting to the last byte of the answer;
    `connect_timeout_s` bounds opening a connection. TLS verifies certificates against `ca_bundle` (a PEM
    file) or the system's store, with one context built here for all connections. Redirects are not
    followed (a 3xx is the coordinator's misconfiguration, not a place to send the key) and proxy settings
    from the environment are ignored, so the bearer key only ever goes to `base_url`.
    """
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return DeadlineClient(
        deadline_s=timeout_s,
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s)),
        transport=transport
        or make_transport(
            transport_kind, max_connections=max_connections, ssl_context=tls_context(ca_bundle)
        ),
        follow_redirects=False,
        trust_env=False,
    )


def _decimal(value: Decimal) -> str:
    # format "f" never uses exponent notation: str(Decimal("1E-7")) would be "1E-7".
    return format(value, "f")


def usage_body(record: UsageRecord) -> dict[str, Any]:
    """The JSON body of `POST /api/billing/usage` for one ledger line."""
    body: dict[str, Any] = {
        "tenant_id": record.tenant_id,
        "event_type": "usage",
        "resource_type": record.resource_type,
        "quantity": _decimal(record.quantity),
        "unit": record.unit,
        "unit_price": _decimal(record.unit_price),
        "total_amount": _decimal(record.amount),
        "currency": record.currency,
        "usage_start": rfc3339(record.usage_start),
        "usage_end": rfc3339(record.usage_end),
        "metadata": dict(record.metadata),
    }
    if record.job_id is not None:
        body["job_id"] = record.job_id
    return body


def _excerpt(response: httpx.Response) -> str:
    """The coordinator's reason: the `detail` of a JSON error body, else the start of the raw text."""
    try:
        text = response.text
    except (httpx.HTTPError, httpx.StreamError, UnicodeDecodeError):
        return ""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "detail" in parsed:
        detail = parsed["detail"]
        extra = parsed.get("extra")
        text = f"{detail} {json.dumps(extra)}" if extra else str(detail)
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"


class CoordinatorBillingClient(BillingGateway):
    """BillingGateway over an `httpx.AsyncClient` whose base URL and bearer key are already set.

    Every failure is translated to a domain error and logged once here, without the key.
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        # The usage call is the hot path of a sync: a ready URL and an encoded body spare httpx
        # re-parsing and merging the URL and re-encoding JSON on each of thousands of requests.
        base = http.base_url
        self._usage_url = base.copy_with(raw_path=base.raw_path + USAGE_PATH.lstrip("/").encode())

    async def send_usage(self, record: UsageRecord) -> None:
        await self._call(
            "send_usage",
            "POST",
            self._usage_url,
            content=json.dumps(usage_body(record), separators=(",", ":")).encode(),
            headers={"Idempotency-Key": record.idempotency_key, "Content-Type": "application/json"},
            log_context={"idempotency_key": record.idempotency_key, "tenant_id": record.tenant_id},
        )

    async def metrics(self, tenant_id: str | None, hours: int) -> Mapping[str, object]:
        params: dict[str, str | int] = {"hours": hours}
        if tenant_id is not None:
            params["tenant_id"] = tenant_id
        response = await self._call(
            "metrics", "GET", METRICS_PATH, params=params, log_context={"tenant_id": tenant_id}
        )
        return self._json_object("metrics", response)

    async def invoice(
        self, tenant_id: str, period_start: datetime, period_end: datetime
    ) -> Mapping[str, object]:
        body = {
            "tenant_id": tenant_id,
            "period_start": rfc3339(period_start),
            "period_end": rfc3339(period_end),
        }
        response = await self._call(
            "invoice", "POST", INVOICE_PATH, json_body=body, log_context={"tenant_id": tenant_id}
        )
        return self._json_object("invoice", response)

    async def _call(
        self,
        operation: str,
        method: str,
        path: str | httpx.URL,
        *,
        json_body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        log_context: Mapping[str, object],
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method, path, json=json_body, content=content, params=params, headers=headers
            )
        except httpx.TimeoutException as exc:
            # The deadline's own message says how long; httpx's per-phase timeouts are named by their class.
            reason = str(exc) if isinstance(exc, DeadlineExceeded) else type(exc).__name__
            message = f"coordinator billing {operation} timed out ({reason})"
            _log.warning(
                "coordinator_billing_failed",
                operation=operation,
                outcome="retry",
                error=message,
                **log_context,
            )
            raise BillingRetryableError(message) from None
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
            message = f"coordinator billing {operation} failed: {type(exc).__name__}: {exc}"
            _log.warning(
                "coordinator_billing_failed",
                operation=operation,
                outcome="retry",
                error=message,
                **log_context,
            )
            raise BillingRetryableError(message) from None

        status = response.status_code
        outcome = classify_status(status)
        if outcome is SyncOutcome.ACCEPTED:
            return response
        reason = _excerpt(response)
        message = f"coordinator billing {operation} answered HTTP {status}" + (
            f": {reason}" if reason else ""
        )
        _log.warning(
            "coordinator_billing_failed",
            operation=operation,
            outcome=str(outcome),
            status_code=status,
            error=message,
            **log_context,
        )
        if outcome is SyncOutcome.RETRY:
            raise BillingRetryableError(message, status_code=status)
        if outcome is SyncOutcome.BLOCKED:
            raise BillingMisconfiguredError(message, status_code=status, reason=reason)
        raise BillingPermanentError(message, status_code=status, reason=reason)

    @staticmethod
    def _json_object(operation: str, response: httpx.Response) -> Mapping[str, object]:
        try:
            parsed = response.json()
        except (ValueError, httpx.HTTPError, httpx.StreamError):
            parsed = None
        if not isinstance(parsed, dict):
            message = (
                f"coordinator billing {operation} answered HTTP {response.status_code} without a JSON object"
            )
            _log.warning("coordinator_billing_failed", operation=operation, outcome="retry", error=message)
            raise BillingRetryableError(message, status_code=response.status_code)
        return parsed
