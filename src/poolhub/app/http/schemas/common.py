"""Shapes shared by every feature: ids, decimals, bounded lists, the error body and paging."""

from __future__ import annotations

import functools
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Response
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import QueryParameter
from litestar.plugins import OpenAPISchemaPlugin
from litestar.typing import FieldDefinition
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


@dataclass(frozen=True, slots=True)
class DecimalRule:
    """Bounds of a decimal input, checked after decoding (msgspec has no numeric constraints on Decimal)."""

    integer_digits: int
    places: int = 12

    def check(self, name: str, value: Decimal) -> Decimal:
        """The value in plain notation (no exponent, no negative zero); ValueError naming the field."""
        if not value.is_finite():
            raise ValueError(f"`{name}` must be a finite decimal number")
        if value < 0:
            raise ValueError(f"`{name}` must be >= 0")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        if -exponent > self.places:
            raise ValueError(f"`{name}` has more than {self.places} decimal places")
        if value >= Decimal(10) ** self.integer_digits:
            raise ValueError(f"`{name}` must be below 1e{self.integer_digits}")
        plain = value.quantize(Decimal(1)) if exponent > 0 else value
        return plain.copy_abs()


def decimal_meta(rule: DecimalRule, description: str, example: str) -> Meta:
    """How a decimal field reads in the schema: a JSON number or a decimal string, decoded exactly.

    Use it as `Annotated[Decimal, decimal_meta(rule, …), rule]`; `Base.__post_init__` checks the rule.
    Answers always carry decimals as strings.
    """
    return Meta(
        description=f'{description}: a JSON number or a decimal string (e.g. "{example}"), decoded exactly '
        f"(never through a float); >= 0, at most {rule.integer_digits} digits before the point and "
        f"{rule.places} after",
        examples=[example],
    )


class DecimalSchemaPlugin(OpenAPISchemaPlugin):
    """Documents a decimal field as what it accepts, a JSON number or a decimal string (Litestar alone
    would say string)."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return False

    def is_plugin_supported_field(self, field_definition: FieldDefinition) -> bool:
        return _rule_in_metadata(field_definition.metadata) is not None

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: Any) -> Schema:
        rule = _rule_in_metadata(field_definition.metadata)
        assert rule is not None
        pattern = rf"^[0-9]{{1,{rule.integer_digits}}}(\.[0-9]{{1,{rule.places}}})?$"
        return Schema(
            one_of=[
                Schema(type=OpenAPIType.STRING, pattern=pattern),
                Schema(type=OpenAPIType.NUMBER, minimum=0, exclusive_maximum=10**rule.integer_digits),
            ]
        )


def _rule_in_metadata(metadata: Any) -> DecimalRule | None:
    return next((m for m in metadata or () if isinstance(m, DecimalRule)), None)


PRICE_RULE = DecimalRule(integer_digits=15)
Price = Annotated[Decimal, decimal_meta(PRICE_RULE, "a non-negative price", "0.75"), PRICE_RULE]
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
    def __post_init__(self) -> None:
        # msgspec turns a ValueError raised here into a 400 naming the rule that failed.
        for name, rule in _decimal_rules(type(self)):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, rule.check(name, value))


@functools.cache
def _decimal_rules(cls: type[Base]) -> tuple[tuple[str, DecimalRule], ...]:
    hints = typing.get_type_hints(cls, include_extras=True)
    found = ((name, _rule_in(hint)) for name, hint in hints.items())
    return tuple((name, rule) for name, rule in found if rule is not None)


def _rule_in(hint: Any) -> DecimalRule | None:
    for meta in getattr(hint, "__metadata__", ()):
        if isinstance(meta, DecimalRule):
            return meta
    for arg in typing.get_args(hint):
        rule = _rule_in(arg)
        if rule is not None:
            return rule
    return None


class Problem(Base, kw_only=True):
    """Every error answer (Litestar's shape): `detail` says what is wrong, `extra` names the fields."""

    status_code: int
    detail: str
    extra: list[dict[str, str]] | dict[str, str] | None = None


def page_response(items: list[T], total: int) -> Response[list[T]]:
    """A page of a list: the items as a JSON array, the total before paging in `X-Total-Count`."""
    return Response(items, headers={"X-Total-Count": str(total)})
