"""PruneHistory: delete history older than its retention, batch by batch; the usage ledger is never pruned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from poolhub.domain.ports import BillingLedger, Clock, UnitOfWork
from poolhub.domain.ports.retention import HistoryKind, HistoryStore
from poolhub.domain.use_cases.derive_api_calls import ApiCallsPolicy
from poolhub.domain.utc import hour_floor


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """`retention_days` for everything but capacity snapshots (`capacity_history_days`, which the
    forecast reads). Each kind is deleted `batch_size` rows per transaction, at most `max_batches` per
    run, so a large backlog is spread over runs instead of holding locks for long."""

    retention_days: int = 30
    capacity_history_days: int = 90
    batch_size: int = 5000
    max_batches: int = 100

    def __post_init__(self) -> None:
        if min(self.retention_days, self.capacity_history_days, self.batch_size, self.max_batches) < 1:
            raise ValueError("retention days, batch_size and max_batches must be >= 1")


class PruneHistory:
    """One retention run: commits once per batch; returns how many rows of each kind went.

    Match records are billed as api_calls per closed hour: those of hours not derived into the ledger
    yet (and still within reach of the derivation) are kept whatever their age, so pruning never loses
    a billable call.
    """

    def __init__(
        self,
        store: HistoryStore,
        ledger: BillingLedger,
        uow: UnitOfWork,
        clock: Clock,
        policy: RetentionPolicy,
        api_calls: ApiCallsPolicy,
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._uow = uow
        self._clock = clock
        self._policy = policy
        self._api_calls = api_calls

    async def execute(self) -> dict[HistoryKind, int]:
        now = self._clock.now()
        cutoff = now - timedelta(days=self._policy.retention_days)
        derived_until = await self._ledger.api_calls_derived_until()
        not_billed_from = (
            hour_floor(derived_until) + timedelta(hours=1)
            if derived_until is not None
            else now - self._api_calls.max_backfill
        )
        await self._uow.rollback()  # end the read before the deletes take their own transactions
        cutoffs = {
            HistoryKind.MATCH_RECORDS: min(cutoff, not_billed_from),
            HistoryKind.SESSIONS: cutoff,
            HistoryKind.PRESENCE_INTERVALS: cutoff,
            HistoryKind.SLA_METRICS: cutoff,
            HistoryKind.RESOLVED_VIOLATIONS: cutoff,
            HistoryKind.CAPACITY_SNAPSHOTS: now - timedelta(days=self._policy.capacity_history_days),
        }
        pruned: dict[HistoryKind, int] = {}
        for kind, before in cutoffs.items():
            total = 0
            for _ in range(self._policy.max_batches):
                deleted = await self._store.prune(kind, before, self._policy.batch_size)
                await self._uow.commit()
                total += deleted
                if deleted < self._policy.batch_size:
                    break
            pruned[kind] = total
        return pruned
