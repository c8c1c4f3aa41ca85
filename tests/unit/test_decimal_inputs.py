"""Decimal inputs: a JSON number or a decimal string, decoded exactly, bounded, in plain notation."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from poolhub.app.http.schemas.billing import UsageRecordCreate
from poolhub.app.http.schemas.match import MatchHints


def _quantity(raw: bytes) -> Decimal:
    body = b'{"tenant_id": "acme", "resource_type": "gpu_hours", "quantity": ' + raw + b"}"
    return msgspec.json.decode(body, type=UsageRecordCreate).quantity


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"10.5", "10.5"),
        (b'"10.5"', "10.5"),
        (b"0.123456789012", "0.123456789012"),  # a float would not keep all twelve places
        (b"9223372.036854775807", "9223372.036854775807"),
        (b"1e3", "1000"),  # plain notation: never "1E+3" in an answer or a stored price
        (b'"2.5E+2"', "250"),
        (b"-0.0", "0.0"),
        (b"0", "0"),
    ],
)
def test_numbers_and_strings_decode_to_the_same_exact_decimal(raw: bytes, expected: str) -> None:
    value = _quantity(raw)
    assert str(value) == expected
    assert value == Decimal(expected)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"-1", ">= 0"),
        (b'"-0.5"', ">= 0"),
        (b'"NaN"', "finite"),
        (b'"Infinity"', "finite"),
        (b"1e400", "below 1e7"),
        (b"10000000", "below 1e7"),
        (b"0.0000000000001", "12 decimal places"),
        (b"true", "Expected `decimal`"),
        (b'"ten"', "Invalid decimal"),
    ],
)
def test_a_bad_decimal_is_refused_naming_the_field(raw: bytes, reason: str) -> None:
    with pytest.raises(msgspec.ValidationError) as error:
        _quantity(raw)
    assert reason in str(error.value)
    assert "quantity" in str(error.value)


def test_a_nested_optional_decimal_is_checked_too() -> None:
    assert msgspec.json.decode(b'{"max_price": 0.8}', type=MatchHints).max_price == Decimal("0.8")
    assert msgspec.json.decode(b"{}", type=MatchHints).max_price is None
    with pytest.raises(msgspec.ValidationError, match="max_price"):
        msgspec.json.decode(b'{"max_price": -1}', type=MatchHints)
