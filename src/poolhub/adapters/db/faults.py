"""Which database failures are whose fault: a transient conflict, an outage, or a row the database refuses."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError

# Serialization failure and deadlock: the transaction lost a race and may simply run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE behind a SQLAlchemy error, whatever the driver (asyncpg or aiosqlite)."""
    candidates: list[object] = [exc, getattr(exc, "orig", None)]
    orig = getattr(exc, "orig", None)
    if orig is not None:
        candidates.append(orig.__cause__)
    for candidate in candidates:
        for attribute in ("sqlstate", "pgcode"):
            value = getattr(candidate, attribute, None)
            if isinstance(value, str) and value:
                return value
    return None


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and sqlstate(exc) in RETRYABLE_SQLSTATES


def is_outage(exc: BaseException) -> bool:
    """The database could not be reached or answered nothing usable: retry later, drop nothing."""
    if is_retryable(exc):
        return False
    return isinstance(exc, OperationalError | InterfaceError | ConnectionError | TimeoutError | OSError)


def is_row_fault(exc: BaseException) -> bool:
    """The statement reached the database (or the driver) and its data was refused: retrying cannot help."""
    return isinstance(exc, StatementError) and not is_outage(exc) and not is_retryable(exc)
