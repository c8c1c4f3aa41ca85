"""Which database failures are whose fault: a lost race, a row the database refuses, or an outage."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# Serialization failure and deadlock: the transaction lost a race and may simply run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# Data exception, integrity constraint violation: this row's values are at fault, not the database.
ROW_FAULT_CLASSES = ("22", "23")


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE behind a SQLAlchemy or driver error, whatever the driver (asyncpg or aiosqlite)."""
    orig = getattr(exc, "orig", None)
    for candidate in (exc, orig, getattr(orig, "__cause__", None)):
        for attribute in ("sqlstate", "pgcode"):
            value = getattr(candidate, attribute, None)
            if isinstance(value, str) and value:
                return value
    return None


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and sqlstate(exc) in RETRYABLE_SQLSTATES


def is_row_fault(exc: BaseException) -> bool:
    """The database (or the driver, binding the values) refused this data: retrying cannot help."""
    if isinstance(exc, DBAPIError):
        state = sqlstate(exc)
        if state is not None:
            return state.startswith(ROW_FAULT_CLASSES)
        return isinstance(exc, DataError | IntegrityError)  # SQLite: no SQLSTATE
    # A value the driver could not bind never reached the database.
    return isinstance(exc, StatementError)


def is_outage(exc: BaseException) -> bool:
    """The database could not be reached or could not serve now: answer 503, retry later, drop nothing.
    A pool with no connection free within its timeout is busy, not broken."""
    if is_retryable(exc) or is_row_fault(exc):
        return False
    return isinstance(
        exc,
        DBAPIError
        | PoolTimeoutError
        | asyncpg.PostgresError
        | asyncpg.InterfaceError
        | OSError
        | TimeoutError,
    )
