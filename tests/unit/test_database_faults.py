"""Whose fault a database error is decides the answer: 503 (retry later), 4xx (the row) or 500 (a bug)."""

from __future__ import annotations

from typing import Any, cast

from litestar import Request
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from poolhub.adapters.db.faults import is_outage, is_row_fault
from poolhub.app.http.errors import unexpected_error_handler

_REQUEST = cast("Request[Any, Any, Any]", type("FakeRequest", (), {"url": type("U", (), {"path": "/x"})()})())


def test_a_pool_with_no_free_connection_is_busy_not_broken() -> None:
    timeout = PoolTimeoutError("QueuePool limit of size 1 overflow 0 reached, connection timed out")
    assert is_outage(timeout)
    answer = unexpected_error_handler(_REQUEST, timeout)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"


def test_a_locked_database_is_an_outage_and_a_refused_row_is_not() -> None:
    locked = OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
    refused = IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))
    assert is_outage(locked) and not is_row_fault(locked)
    assert is_row_fault(refused) and not is_outage(refused)


def test_any_other_error_is_a_500_that_says_nothing_of_internals() -> None:
    answer = unexpected_error_handler(_REQUEST, RuntimeError("secret internals"))
    assert answer.status_code == 500
    assert "secret" not in str(answer.content)
