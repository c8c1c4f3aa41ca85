"""Billing domain rules: prices, amounts, usage derivation, idempotency keys, sync outcomes, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from poolhub.domain.billing import (
    DEFAULT_UNIT_PRICES,
    BackoffPolicy,
    BillingPermanentError,
    BillingRetryableError,
    SyncOutcome,
    UnitPrices,
    UsageRecord,
    amount,
    api_calls_usage,
    classify_status,
    manual_usage,
    unit_of,
    usage_from_completed_job,
)
from poolhub.domain.errors import BillingRejectedError, BillingUnavailableError, InvalidInputError

PRICES = UnitPrices.parse(DEFAULT_UNIT_PRICES)
DONE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def job_usage(**overrides: object) -> tuple[UsageRecord, ...]:
    args: dict[str, object] = {
        "job_id": "job-1",
        "miner_id": "m-1",
        "tenant_id": "acme",
        "match_tenant_id": None,
        "duration_ms": 1_800_000.0,
        "latency_ms": None,
        "gpu_count": 1,
        "completed_at": DONE,
        "prices": PRICES,
    }
    args.update(overrides)
    return usage_from_completed_job(**args)  # type: ignore[arg-type]


def by_type(records: tuple[UsageRecord, ...]) -> dict[str, UsageRecord]:
    return {r.resource_type: r for r in records}


# --- unit prices ---------------------------------------------------------------------------------------


def test_default_prices_parse_to_exact_decimals() -> None:
    assert dict(PRICES.prices) == {
        "gpu_hours": Decimal("0.50"),
        "compute_hours": Decimal("0.30"),
        "api_calls": Decimal("0.0001"),
    }
    assert PRICES.currency == "USD"


def test_prices_tolerate_spaces_and_any_valid_resource_name() -> None:
    prices = UnitPrices.parse(" gpu_hours : 1.25 , storage_gb:0 ", currency="EUR")
    assert prices.price_of("gpu_hours") == Decimal("1.25")
    assert prices.price_of("storage_gb") == 0
    assert prices.currency == "EUR"


def test_unknown_resource_type_costs_zero_but_is_not_priced() -> None:
    assert PRICES.price_of("tpu_hours") == 0
    assert not PRICES.is_priced("tpu_hours")
    assert PRICES.is_priced("gpu_hours")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("gpu_hours:0.5,", "entry 2 is empty"),
        ("gpu_hours=0.5", "no ':'"),
        ("gpu_hours:-0.5", "≥ 0"),
        ("gpu_hours:abc", "not a decimal"),
        ("gpu_hours:", "not a decimal"),
        ("gpu_hours:NaN", "finite"),
        ("gpu_hours:sNaN", "finite"),
        ("gpu_hours:inf", "finite"),
        ("gpu_hours:-Infinity", "finite"),
        ("GPU_hours:0.5", "[a-z_]"),
        ("gpu-hours:0.5", "[a-z_]"),
        (":0.5", "[a-z_]"),
        ("a" * 33 + ":0.5", "[a-z_]"),
        ("gpu_hours:0.5,gpu_hours:0.6", "twice"),
    ],
)
def test_bad_price_text_is_refused_with_a_clear_message(text: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="unit prices") as caught:
        UnitPrices.parse(text)
    assert complaint in str(caught.value)


def test_bad_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="currency"):
        UnitPrices.parse("gpu_hours:1", currency="usd")


def test_prices_built_directly_are_checked_and_frozen() -> None:
    with pytest.raises(ValueError, match="≥ 0"):
        UnitPrices({"gpu_hours": Decimal("-1")})
    source = {"gpu_hours": Decimal("1")}
    prices = UnitPrices(source)
    source["gpu_hours"] = Decimal("9")
    assert prices.price_of("gpu_hours") == 1
    with pytest.raises(TypeError):
        prices.prices["gpu_hours"] = Decimal("2")  # type: ignore[index]


# --- amounts -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantity", "price", "expected"),
    [
        ("0.5", "0.50", "0.25000000"),
        ("3", "0.0001", "0.00030000"),
        ("0.000000005", "1", "0.00000001"),  # half rounds up, not to even
        ("0.000000015", "1", "0.00000002"),
        ("0.000000025", "1", "0.00000003"),  # ROUND_HALF_EVEN would give ...02
        ("0.0000000049", "1", "0.00000000"),
        ("123456789012345678901234.5", "0.3", "37037036703703703670370.35000000"),  # no 28-digit rounding
        ("0", "0.5", "0E-8"),
    ],
)
def test_amount_is_rounded_half_up_to_eight_places(quantity: str, price: str, expected: str) -> None:
    result = amount(Decimal(quantity), Decimal(price))
    assert result == Decimal(expected)
    assert result.as_tuple().exponent == -8


def test_amount_never_yields_negative_zero() -> None:
    assert not amount(Decimal("-0.000000001"), Decimal(1)).is_signed()


def test_amount_refuses_non_finite_input() -> None:
    with pytest.raises(ValueError, match="finite"):
        amount(Decimal("NaN"), Decimal(1))


# --- usage from a completed job ------------------------------------------------------------------------


def test_duration_becomes_exact_compute_and_gpu_hours() -> None:
    records = by_type(job_usage(duration_ms=1_800_000.0, gpu_count=4))
    compute, gpu = records["compute_hours"], records["gpu_hours"]
    assert compute.quantity == Decimal("0.5")
    assert str(compute.quantity) == "0.5"
    assert gpu.quantity == Decimal("2.0")
    assert compute.unit == gpu.unit == "hours"
    assert compute.unit_price == Decimal("0.30")
    assert compute.amount == Decimal("0.15")
    assert gpu.amount == Decimal("1.00")
    assert compute.currency == "USD"


def test_gpu_hours_multiply_compute_hours_by_gpu_count() -> None:
    for gpus in (1, 2, 8):
        records = by_type(job_usage(duration_ms=900_000.0, gpu_count=gpus))
        assert records["gpu_hours"].quantity == records["compute_hours"].quantity * gpus
        assert records["gpu_hours"].metadata["gpu_count"] == gpus


def test_latency_is_used_when_duration_is_missing() -> None:
    records = by_type(job_usage(duration_ms=None, latency_ms=360_000.0))
    assert records["compute_hours"].quantity == Decimal("0.1")
    assert records["compute_hours"].metadata["basis"] == "latency_ms"


def test_duration_wins_over_latency() -> None:
    records = by_type(job_usage(duration_ms=3_600_000.0, latency_ms=360_000.0))
    assert records["compute_hours"].quantity == 1
    assert records["compute_hours"].metadata["basis"] == "duration_ms"


def test_no_duration_and_no_latency_bills_nothing() -> None:
    assert job_usage(duration_ms=None, latency_ms=None) == ()


def test_zero_duration_still_records_zero_quantity() -> None:
    records = by_type(job_usage(duration_ms=0.0, latency_ms=500.0))
    assert records["compute_hours"].quantity == 0
    assert records["gpu_hours"].amount == 0


def test_non_terminating_hours_are_rounded_to_twelve_places() -> None:
    records = by_type(job_usage(duration_ms=1.0, gpu_count=3))
    assert records["compute_hours"].quantity == Decimal("0.000000277778")
    assert records["gpu_hours"].quantity == Decimal("0.000000833334")


def test_fractional_milliseconds_are_read_from_their_decimal_form() -> None:
    records = by_type(job_usage(duration_ms=0.36))
    assert records["compute_hours"].quantity == Decimal("0.0000001")


def test_usage_span_ends_at_completion_and_lasts_the_duration() -> None:
    completed = datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    for record in job_usage(duration_ms=1_800_000.0, completed_at=completed):
        assert record.usage_end == DONE
        assert record.usage_end.tzinfo is UTC
        assert record.usage_start == DONE - timedelta(minutes=30)


@pytest.mark.parametrize(
    ("tenant_id", "match_tenant_id", "expected"),
    [
        ("feedback-tenant", "match-tenant", "feedback-tenant"),
        (None, "match-tenant", "match-tenant"),
        ("", "match-tenant", "match-tenant"),
        (None, None, "m-1"),
    ],
)
def test_tenant_falls_back_from_feedback_to_match_to_miner(
    tenant_id: str | None, match_tenant_id: str | None, expected: str
) -> None:
    records = job_usage(tenant_id=tenant_id, match_tenant_id=match_tenant_id)
    assert {r.tenant_id for r in records} == {expected}


def test_job_records_carry_miner_and_job() -> None:
    for record in job_usage():
        assert record.miner_id == "m-1"
        assert record.job_id == "job-1"
        assert record.metadata["miner_id"] == "m-1"


@pytest.mark.parametrize(
    "overrides",
    [
        {"gpu_count": 0},
        {"duration_ms": -1.0},
        {"duration_ms": float("nan")},
        {"duration_ms": None, "latency_ms": float("inf")},
        {"completed_at": datetime(2026, 3, 1, 12, 0)},  # naive
        {"job_id": "bad id with spaces"},
    ],
)
def test_impossible_job_usage_is_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        job_usage(**overrides)


# --- idempotency keys ----------------------------------------------------------------------------------


def test_job_keys_are_derived_from_what_they_record() -> None:
    assert {r.idempotency_key for r in job_usage()} == {
        "job:job-1:m-1:compute_hours",
        "job:job-1:m-1:gpu_hours",
    }


def test_replayed_feedback_derives_the_same_keys() -> None:
    first = job_usage()
    replay = job_usage()
    assert [r.idempotency_key for r in first] == [r.idempotency_key for r in replay]
    assert first == replay


def test_different_job_miner_or_resource_gives_different_keys() -> None:
    keys = [r.idempotency_key for r in job_usage()]
    keys += [r.idempotency_key for r in job_usage(job_id="job-2")]
    keys += [r.idempotency_key for r in job_usage(miner_id="m-2")]
    assert len(set(keys)) == len(keys) == 6


def test_api_calls_are_keyed_per_tenant_hour() -> None:
    record = api_calls_usage(
        tenant_id="acme", hour_start=datetime(2026, 3, 1, 9, 41, 5, tzinfo=UTC), calls=2500, prices=PRICES
    )
    assert record.idempotency_key == "api_calls:acme:2026-03-01T09"
    assert record.usage_start == datetime(2026, 3, 1, 9, tzinfo=UTC)
    assert record.usage_end == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert record.quantity == 2500
    assert record.unit == "calls"
    assert record.amount == Decimal("0.25")
    assert record.miner_id is None


def test_api_calls_hour_is_the_utc_hour() -> None:
    local = datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    record = api_calls_usage(tenant_id="acme", hour_start=local, calls=1, prices=PRICES)
    assert record.idempotency_key == "api_calls:acme:2026-02-28T22"


def test_api_calls_keys_differ_by_tenant_and_hour_only() -> None:
    def key(tenant: str, hour: int, calls: int = 1) -> str:
        start = datetime(2026, 3, 1, hour, tzinfo=UTC)
        return api_calls_usage(tenant_id=tenant, hour_start=start, calls=calls, prices=PRICES).idempotency_key

    assert key("acme", 9) != key("acme", 10)
    assert key("acme", 9) != key("globex", 9)
    assert key("acme", 9, calls=1) == key("acme", 9, calls=7)


def test_negative_api_calls_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        api_calls_usage(tenant_id="acme", hour_start=DONE, calls=-1, prices=PRICES)


# --- manual records ------------------------------------------------------------------------------------


def test_manual_record_uses_configured_price_and_request_key() -> None:
    record = manual_usage(
        tenant_id="acme",
        resource_type="gpu_hours",
        quantity=Decimal("3"),
        unit_price=None,
        recorded_at=DONE,
        prices=PRICES,
        request_id="0f9e",
        job_id="job-9",
        metadata={"note": "backfill"},
    )
    assert record.idempotency_key == "manual:0f9e"
    assert record.unit_price == Decimal("0.50")
    assert record.amount == Decimal("1.5")
    assert record.usage_start == record.usage_end == DONE
    assert record.job_id == "job-9"
    assert dict(record.metadata) == {"note": "backfill"}


def test_manual_record_of_any_resource_type_with_explicit_price() -> None:
    record = manual_usage(
        tenant_id="acme",
        resource_type="storage_gb",
        quantity=Decimal("10"),
        unit_price=Decimal("0.02"),
        recorded_at=DONE,
        prices=PRICES,
        request_id="r-1",
    )
    assert record.unit == "units"
    assert record.amount == Decimal("0.2")


def test_manual_record_of_unpriced_type_without_price_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="no configured unit price"):
        manual_usage(
            tenant_id="acme",
            resource_type="gpu_hour",
            quantity=Decimal("1"),
            unit_price=None,
            recorded_at=DONE,
            prices=PRICES,
            request_id="r-1",
        )


@pytest.mark.parametrize(
    "overrides",
    [
        {"resource_type": "GPU"},
        {"quantity": Decimal("-1")},
        {"quantity": Decimal("Infinity")},
        {"unit_price": Decimal("-0.1")},
        {"tenant_id": ""},
        {"metadata": {"x": float("nan")}},
        {"metadata": {"x": [1, 2]}},
        {"recorded_at": datetime(2026, 3, 1)},
    ],
)
def test_bad_manual_record_is_refused(overrides: dict[str, object]) -> None:
    args: dict[str, object] = {
        "tenant_id": "acme",
        "resource_type": "gpu_hours",
        "quantity": Decimal("1"),
        "unit_price": None,
        "recorded_at": DONE,
        "prices": PRICES,
        "request_id": "r-1",
    }
    args.update(overrides)
    with pytest.raises(InvalidInputError):
        manual_usage(**args)  # type: ignore[arg-type]


def test_units_of_resource_types() -> None:
    assert unit_of("gpu_hours") == "hours"
    assert unit_of("compute_hours") == "hours"
    assert unit_of("api_calls") == "calls"
    assert unit_of("storage_gb") == "units"


def test_record_metadata_is_a_frozen_copy() -> None:
    metadata = {"a": 1}
    record = manual_usage(
        tenant_id="acme",
        resource_type="gpu_hours",
        quantity=Decimal(1),
        unit_price=None,
        recorded_at=DONE,
        prices=PRICES,
        request_id="r-1",
        metadata=metadata,
    )
    metadata["a"] = 2
    assert record.metadata["a"] == 1


# --- sync outcome --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (None, SyncOutcome.RETRY),
        (200, SyncOutcome.ACCEPTED),
        (201, SyncOutcome.ACCEPTED),
        (204, SyncOutcome.ACCEPTED),
        (299, SyncOutcome.ACCEPTED),
        (408, SyncOutcome.RETRY),
        (429, SyncOutcome.RETRY),
        (500, SyncOutcome.RETRY),
        (502, SyncOutcome.RETRY),
        (503, SyncOutcome.RETRY),
        (504, SyncOutcome.RETRY),
        (599, SyncOutcome.RETRY),
        (400, SyncOutcome.REJECTED),
        (409, SyncOutcome.REJECTED),
        (422, SyncOutcome.REJECTED),
        # v1.1: a misconfigured integration blocks the run instead of rejecting records
        (401, SyncOutcome.BLOCKED),
        (403, SyncOutcome.BLOCKED),
        (404, SyncOutcome.BLOCKED),
        (405, SyncOutcome.BLOCKED),
        (499, SyncOutcome.BLOCKED),
        (100, SyncOutcome.BLOCKED),
        (301, SyncOutcome.BLOCKED),
        (302, SyncOutcome.BLOCKED),
        (307, SyncOutcome.BLOCKED),
        (600, SyncOutcome.BLOCKED),
    ],
)
def test_status_codes_classify_into_accept_retry_reject_block(
    status: int | None, outcome: SyncOutcome
) -> None:
    assert classify_status(status) is outcome


def test_billing_errors_keep_the_domain_bases() -> None:
    retry = BillingRetryableError("down", status_code=503)
    permanent = BillingPermanentError("HTTP 422: nope", status_code=422, reason="nope")
    assert isinstance(retry, BillingUnavailableError)
    assert retry.status_code == 503
    assert BillingRetryableError("timeout").status_code is None
    assert isinstance(permanent, BillingRejectedError)
    assert (permanent.status_code, permanent.reason, permanent.message) == (422, "nope", "HTTP 422: nope")


# --- backoff -------------------------------------------------------------------------------------------

NO_JITTER = 0.5


def test_backoff_grows_geometrically_from_the_base() -> None:
    policy = BackoffPolicy(base_seconds=30, factor=2, max_seconds=3600, jitter=0.2)
    assert [policy.delay(n, NO_JITTER) for n in range(1, 6)] == [30, 60, 120, 240, 480]


def test_backoff_is_capped() -> None:
    policy = BackoffPolicy()
    assert policy.delay(8, NO_JITTER) == 3600  # 30 × 2^7 = 3840
    assert policy.delay(10_000, NO_JITTER) == 3600  # no overflow
    assert all(policy.delay(50, u / 100) <= 3600 for u in range(100))


def test_backoff_jitter_stays_within_bounds() -> None:
    policy = BackoffPolicy(base_seconds=100, factor=2, max_seconds=10_000, jitter=0.2)
    assert policy.delay(1, 0.0) == pytest.approx(80)
    assert policy.delay(1, 0.999999) == pytest.approx(120, rel=1e-5)
    draws = [policy.delay(3, u / 1000) for u in range(1000)]
    assert all(320 <= d < 480 for d in draws)
    assert max(draws) - min(draws) > 150


def test_backoff_is_deterministic_for_a_given_draw() -> None:
    policy = BackoffPolicy()
    assert policy.delay(3, 0.37) == policy.delay(3, 0.37)


def test_backoff_without_failures_does_not_wait() -> None:
    assert BackoffPolicy().delay(0, 0.9) == 0


@pytest.mark.parametrize("draw", [-0.1, 1.0, 2.0])
def test_backoff_refuses_a_draw_outside_the_unit_interval(draw: float) -> None:
    with pytest.raises(ValueError, match="random_unit"):
        BackoffPolicy().delay(1, draw)


@pytest.mark.parametrize(
    "settings",
    [{"factor": 0.5}, {"jitter": 1.5}, {"base_seconds": -1}, {"max_seconds": float("inf")}],
)
def test_backoff_refuses_nonsense_settings(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        BackoffPolicy(**settings)
