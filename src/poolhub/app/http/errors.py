"""One table from exception type to HTTP status, and the handlers that render Litestar's error shape."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import ExceptionHandlersMap
from sqlalchemy.exc import InterfaceError, OperationalError

from poolhub.adapters.db.faults import is_outage, is_retryable
from poolhub.domain.errors import (
    AuthenticationError,
    BillingRejectedError,
    BillingUnavailableError,
    ConflictError,
    DomainError,
    ForbiddenError,
    InvalidInputError,
    LimitExceededError,
    NotFoundError,
)

STATUS_BY_ERROR: dict[type[DomainError], int] = {
    InvalidInputError: 400,
    AuthenticationError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    LimitExceededError: 422,
    BillingRejectedError: 502,
    BillingUnavailableError: 502,
}

_log = structlog.get_logger("poolhub.errors")


def status_for(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def _body(status: int, detail: str, extra: object = None) -> dict[str, object]:
    body: dict[str, object] = {"status_code": status, "detail": detail}
    if extra is not None:
        body["extra"] = extra
    return body


def domain_error_answer(error: DomainError) -> tuple[int, dict[str, object], dict[str, str] | None]:
    """Status, body and extra headers of the answer to a refused request."""
    status = status_for(error)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return status, _body(status, error.message), headers


def domain_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    assert isinstance(exc, DomainError)
    status, body, headers = domain_error_answer(exc)
    return Response(body, status_code=status, headers=headers)


def unexpected_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    if isinstance(exc, HTTPException):
        return Response(
            _body(exc.status_code, exc.detail, exc.extra or None),
            status_code=exc.status_code,
            headers=exc.headers,
        )
    if is_outage(exc) or is_retryable(exc):  # a driver error at connect, or a race retried to its limit
        return database_unavailable_handler(request, exc)
    # Logged once here, with the traceback; the client learns nothing about internals.
    _log.error("unhandled_exception", path=request.url.path, exc_info=exc)
    return Response(
        _body(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error"),
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
    )


def database_unavailable_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    # An outage is the operator's problem, not a bug: a 503 the client can retry, logged without a traceback.
    _log.warning("database_unavailable", path=request.url.path, error=type(exc).__name__)
    return Response(
        _body(HTTP_503_SERVICE_UNAVAILABLE, "the database is unavailable; retry shortly"),
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    DomainError: domain_error_handler,
    OperationalError: database_unavailable_handler,
    InterfaceError: database_unavailable_handler,
    ConnectionError: database_unavailable_handler,
    TimeoutError: database_unavailable_handler,
    Exception: unexpected_error_handler,
}
