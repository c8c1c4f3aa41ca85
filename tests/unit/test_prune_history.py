"""PruneHistory over fakes: cutoffs per kind, bounded batches, unbilled match records kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from poolhub.domain.billing import DEFAULT_UNIT_PRICES, UnitPrices, api_calls_usage
from poolhub.domain.ports.retention import HistoryKind
from poolhub.domain.use_cases.derive_api_calls import ApiCallsPolicy
from poolhub.domain.use_cases.prune_history import PruneHistory, RetentionPolicy
from tests.fakes import FakeBillingLedger, FakeUnitOfWork, FixedClock

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


class FakeHistoryStore:
    """`rows[kind]` holds the age stamps of the rows of each kind; each prune call is recorded."""

    def __init__(self, rows: dict[HistoryKind, list[datetime]]) -> None:
        self.rows = rows
        self.calls: list[tuple[HistoryKind, datetime, int]] = []

    async def prune(self, kind: HistoryKind, before: datetime, limit: int) -> int:
        self.calls.append((kind, before, limit))
        aged = [stamp for stamp in self.rows.get(kind, []) if stamp < before][:limit]
        for stamp in aged:
            self.rows[kind].remove(stamp)
        return len(aged)


async def run(
    store: FakeHistoryStore, ledger: FakeBillingLedger, policy: RetentionPolicy
) -> tuple[dict[HistoryKind, int], FakeUnitOfWork]:
    uow = FakeUnitOfWork()
    pruned = await PruneHistory(store, ledger, uow, FixedClock(NOW), policy, ApiCallsPolicy()).execute()
    return pruned, uow


async def test_each_kind_is_pruned_past_its_retention_in_bounded_batches() -> None:
    old, kept = NOW - timedelta(days=31), NOW - timedelta(days=29)
    store = FakeHistoryStore(
        {
            HistoryKind.SLA_METRICS: [old] * 5 + [kept],
            HistoryKind.CAPACITY_SNAPSHOTS: [NOW - timedelta(days=91), old],
        }
    )
    ledger = FakeBillingLedger()
    await ledger.add(
        [
            api_calls_usage(
                tenant_id="a", hour_start=NOW, calls=1, prices=UnitPrices.parse(DEFAULT_UNIT_PRICES)
            )
        ]
    )

    pruned, uow = await run(store, ledger, RetentionPolicy(batch_size=2, max_batches=10))

    assert pruned[HistoryKind.SLA_METRICS] == 5
    assert store.rows[HistoryKind.SLA_METRICS] == [kept]
    assert pruned[HistoryKind.CAPACITY_SNAPSHOTS] == 1
    metric_calls = [call for call in store.calls if call[0] is HistoryKind.SLA_METRICS]
    assert [limit for _, _, limit in metric_calls] == [2, 2, 2]  # 2 + 2 + 1: each batch its own commit
    assert uow.commits == len(store.calls)


async def test_a_run_stops_after_max_batches_and_the_next_run_continues() -> None:
    store = FakeHistoryStore({HistoryKind.MATCH_RECORDS: [NOW - timedelta(days=60)] * 10})
    policy = RetentionPolicy(batch_size=2, max_batches=3)
    first, _ = await run(store, FakeBillingLedger(), policy)
    assert first[HistoryKind.MATCH_RECORDS] == 6
    second, _ = await run(store, FakeBillingLedger(), policy)
    assert second[HistoryKind.MATCH_RECORDS] == 4


async def test_match_records_of_hours_not_yet_derived_are_kept() -> None:
    derived = NOW - timedelta(days=40)
    store = FakeHistoryStore(
        {HistoryKind.MATCH_RECORDS: [NOW - timedelta(days=45), NOW - timedelta(days=35)]}
    )
    ledger = FakeBillingLedger()
    await ledger.add(
        [
            api_calls_usage(
                tenant_id="a", hour_start=derived, calls=1, prices=UnitPrices.parse(DEFAULT_UNIT_PRICES)
            )
        ]
    )

    pruned, _ = await run(store, ledger, RetentionPolicy())

    assert pruned[HistoryKind.MATCH_RECORDS] == 1
    assert store.rows[HistoryKind.MATCH_RECORDS] == [NOW - timedelta(days=35)]
