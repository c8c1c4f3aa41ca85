"""Shapes shared by every feature: ids, decimals, bounded lists, the error body and paging."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Response
from litestar.params import QueryParameter
from msgspec import Meta

T = TypeVar("T")

# Every free-text string on the wire: no NUL or other control character (PostgreSQL refuses NUL in text
# and jsonb, and a control character in a log line or a tag is never meant).
# `$(?!\n)`: Python's `$` also matches before a final newline, which would let "id\n" through.
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$(?!\n)"
ID_PATTERN = r"^[A-Za-z0-9._:-]+$(?!\n)"


def text(max_length: int, min_length: int = 0, **meta: Any) -> Meta:
    """The constraints of a free-text string field: its length bounds and no control characters."""
    return Meta(min_length=min_length, max_length=max_length, pattern=NO_CONTROL_PATTERN, **meta)


def utc_representable(value: datetime | None, field: str) -> None:
    """Refuse a timestamp whose offset carries it outside the years 1-9999 once converted to UTC."""
    if value is None:
        return
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{field}: {value.isoformat()} cannot be represented in UTC") from None


Id = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="1-64 characters of [A-Za-z0-9._:-]",
    ),
]
DecimalText = Annotated[
    str,
    Meta(
        max_length=32,
        pattern=r"^[0-9]{1,15}(\.[0-9]{1,12})?$",
        description='a non-negative decimal number as a string, e.g. "0.75"',
        examples=["0.75"],
    ),
]
Timestamp = Annotated[datetime, Meta(tz=True, description="RFC 3339 with an offset")]
Item = Annotated[str, text(128, 1)]
Items = Annotated[list[Item], Meta(max_length=64, description="at most 64 items of at most 128 characters")]
Count = Annotated[int, Meta(ge=0, le=1_000_000)]
Size = Annotated[float, Meta(ge=0, le=1_000_000_000)]
Millis = Annotated[float, Meta(ge=0, le=86_400_000_000)]
Temperature = Annotated[float, Meta(ge=-273.15, le=1_000)]


# Page bounds of every paginated list (API.md: offset >= 0, limit 1-500, default 100).
Offset = Annotated[int, QueryParameter(ge=0, le=1_000_000_000, description="items to skip", required=False)]
Limit = Annotated[int, QueryParameter(ge=1, le=500, description="page size (1-500)", required=False)]


class Base(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=False):
    pass


class Problem(Base, kw_only=True):
    """Every error answer (Litestar's shape): `detail` says what is wrong, `extra` names the fields."""

    status_code: int
    detail: str
    extra: list[dict[str, str]] | dict[str, str] | None = None


def page_response(items: list[T], total: int) -> Response[list[T]]:
    """A page of a list: the items as a JSON array, the total before paging in `X-Total-Count`."""
    return Response(items, headers={"X-Total-Count": str(total)})
