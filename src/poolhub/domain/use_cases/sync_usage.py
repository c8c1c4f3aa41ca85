"""Deliver pending ledger lines to the coordinator: oldest first, in bounded batches, sent concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from poolhub.domain.billing import BackoffPolicy, LedgerEntry
from poolhub.domain.errors import BillingRejectedError, BillingUnavailableError
from poolhub.domain.ports import (
    BillingGateway,
    BillingLedger,
    Clock,
    PendingSelection,
    RandomSource,
    RetryMark,
    UnitOfWork,
)
from poolhub.domain.use_cases.derive_api_calls import DeriveApiCalls


@dataclass(frozen=True, slots=True)
class SyncLimits:
    """`batch_size` lines are read, sent and marked per transaction, `concurrency` sends are in flight at
    once, and `breaker_threshold` retryable failures in a row end the run (the coordinator is down: the
    rest waits for the next run instead of each line waiting out its own timeout)."""

    batch_size: int = 1000
    concurrency: int = 32
    breaker_threshold: int = 32

    def __post_init__(self) -> None:
        if min(self.batch_size, self.concurrency, self.breaker_threshold) < 1:
            raise ValueError("batch_size, concurrency and breaker_threshold must be >= 1")


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Which pending lines to send. The scheduler respects each line's backoff; an operator's sync
    sends every pending line now. `derive_api_calls` first adds the api_calls lines of closed hours."""

    miner_id: str | None = None
    hours_back: int | None = None
    respect_backoff: bool = False
    derive_api_calls: bool = True


@dataclass(frozen=True, slots=True)
class SyncReport:
    """`records_pending`: pending lines of the request's selection after the run; `pending_total`: all
    pending lines; `records_skipped`: lines not tried because the run stopped early."""

    records_sent: int
    records_failed: int
    records_rejected: int
    records_pending: int
    pending_total: int
    records_skipped: int = 0
    api_calls_added: int = 0
    stopped_early: bool = False


@dataclass(slots=True)
class _Batch:
    accepted: list[int] = field(default_factory=list)
    retry: list[tuple[LedgerEntry, str]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0
    failures_in_a_row: int = 0
    tripped: bool = False


class SyncUsage:
    """Send pending ledger lines, each under its own Idempotency-Key; commits once per batch.

    Each line is sent *before* its new state is committed. A crash, a lost connection or a failed commit
    between the send and the commit leaves the line pending, so a later run sends it again under the same
    key and the coordinator counts it once (a repeated key is accepted without double counting): delivery
    is at least once, the effect exactly once. Marking first would risk the opposite, a line marked
    synced that the coordinator never received, which is lost money.

    2xx marks a line synced; 408, 429, 5xx and transport failures leave it pending with exponential
    backoff and jitter (`BackoffPolicy`, drawn from the injected random source); any other 4xx marks it
    rejected with the coordinator's reason, never retried automatically. The api_calls lines of closed
    hours are derived first, so they go out in the same run.
    """

    def __init__(
        self,
        ledger: BillingLedger,
        gateway: BillingGateway,
        uow: UnitOfWork,
        clock: Clock,
        random: RandomSource,
        backoff: BackoffPolicy,
        limits: SyncLimits,
        derive: DeriveApiCalls,
    ) -> None:
        self._ledger = ledger
        self._gateway = gateway
        self._uow = uow
        self._clock = clock
        self._random = random
        self._backoff = backoff
        self._limits = limits
        self._derive = derive

    async def execute(self, request: SyncRequest) -> SyncReport:
        api_calls_added = await self._derive.execute() if request.derive_api_calls else 0
        started = self._clock.now()
        selection = PendingSelection(
            miner_id=request.miner_id,
            usage_end_from=(
                started - timedelta(hours=request.hours_back) if request.hours_back is not None else None
            ),
        )
        sent = failed = rejected = skipped = 0
        after_id = 0
        tripped = False
        while not tripped:
            entries = await self._ledger.pending_batch(
                after_id=after_id,
                limit=self._limits.batch_size,
                due_at=self._clock.now() if request.respect_backoff else None,
                selection=selection,
            )
            if not entries:
                break
            batch = await self._send(entries)
            await self._mark(batch)
            sent += len(batch.accepted)
            failed += len(batch.retry)
            rejected += len(batch.rejected)
            skipped += batch.skipped
            tripped = batch.tripped
            after_id = entries[-1].id
            if len(entries) < self._limits.batch_size:
                break
        pending = await self._ledger.count_pending(selection)
        everything = PendingSelection()
        pending_total = pending if selection == everything else await self._ledger.count_pending(everything)
        return SyncReport(
            records_sent=sent,
            records_failed=failed,
            records_rejected=rejected,
            records_pending=pending,
            pending_total=pending_total,
            records_skipped=skipped,
            api_calls_added=api_calls_added,
            stopped_early=tripped,
        )

    async def _send(self, entries: Sequence[LedgerEntry]) -> _Batch:
        batch = _Batch()
        queue = iter(entries)
        threshold = self._limits.breaker_threshold

        async def worker() -> None:
            for entry in queue:  # one shared iterator: each worker takes the next line when it is free
                if batch.tripped:
                    batch.skipped += 1
                    continue
                try:
                    await self._gateway.send_usage(entry.record)
                except BillingUnavailableError as exc:
                    batch.retry.append((entry, exc.message))
                    batch.failures_in_a_row += 1
                    batch.tripped = batch.failures_in_a_row >= threshold
                except BillingRejectedError as exc:
                    batch.rejected.append((entry.id, exc.message))
                    batch.failures_in_a_row = 0
                else:
                    batch.accepted.append(entry.id)
                    batch.failures_in_a_row = 0

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._limits.concurrency, len(entries))):
                group.create_task(worker())
        return batch

    async def _mark(self, batch: _Batch) -> None:
        now = self._clock.now()
        await self._ledger.mark_synced(batch.accepted, now)
        await self._ledger.mark_retry(
            [
                RetryMark(
                    id=entry.id,
                    next_attempt_at=now
                    + timedelta(seconds=self._backoff.delay(entry.attempts + 1, self._random.random())),
                    error=error,
                )
                for entry, error in batch.retry
            ]
        )
        await self._ledger.mark_rejected(batch.rejected, now)
        await self._uow.commit()
