"""UTC instants: checking that a datetime is aware, flooring it to the hour, writing it as RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime

from poolhub.domain.errors import InvalidInputError


def as_utc(name: str, value: datetime) -> datetime:
    """`value` in UTC; InvalidInputError naming `name` when it is not a timezone-aware datetime."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidInputError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour containing `moment`."""
    return as_utc("moment", moment).replace(minute=0, second=0, microsecond=0)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
