"""Deliver pending ledger lines to the coordinator: oldest first, in bounded batches, sent concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from poolhub.domain.billing import BackoffPolicy, BillingMisconfiguredError, LedgerEntry
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
    """`batch_size` lines are claimed, sent and marked per round, `concurrency` sends are in flight at
    once, and `breaker_threshold` retryable failures in a row end the run (the coordinator is down: the
    rest waits for the next run instead of each line waiting out its own timeout). A claim lasts
    `claim_seconds`: long enough to send a whole batch, after which a dead claimer's lines come back."""

    batch_size: int = 1000
    concurrency: int = 32
    breaker_threshold: int = 32
    claim_seconds: float = 600.0

    def __post_init__(self) -> None:
        if min(self.batch_size, self.concurrency, self.breaker_threshold) < 1:
            raise ValueError("batch_size, concurrency and breaker_threshold must be >= 1")
        if not self.claim_seconds > 0:
            raise ValueError("claim_seconds must be > 0")


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
    pending lines; `records_skipped`: lines not tried because the run stopped early; `billing_blocked`:
    why the coordinator blocks delivery (this run, or an earlier one no run has got past since)."""

    records_sent: int
    records_failed: int
    records_rejected: int
    records_pending: int
    pending_total: int
    records_skipped: int = 0
    api_calls_added: int = 0
    stopped_early: bool = False
    billing_blocked: str | None = None


@dataclass(slots=True)
class _Run:
    """What one run has seen so far; the breaker's count carries across batches."""

    failures_in_a_row: int = 0
    tripped: bool = False
    blocked: str | None = None
    probed: bool = False

    @property
    def stopped(self) -> bool:
        return self.tripped or self.blocked is not None


@dataclass(slots=True)
class _Batch:
    accepted: list[int] = field(default_factory=list)
    retry: list[tuple[LedgerEntry, str]] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    skipped: int = 0


def _blocked_sentence(exc: BillingMisconfiguredError) -> str:
    return (
        f"coordinator answered {exc.status_code} to a usage record, so its billing URL, key or routes "
        f"are misconfigured; delivery is paused and every record stays pending ({exc.message})"
    )


class SyncUsage:
    """Send pending ledger lines, each under its own Idempotency-Key, with no transaction open while
    anything is on the wire.

    Each round claims a batch (committed: another run, in this process or another, skips claimed lines
    until the claim lapses), sends it, then marks the outcomes and drops the claim in a second
    transaction. A crash between the send and the mark leaves the line pending, so a later run sends it
    again under the same key and the coordinator counts it once: delivery is at least once, the effect
    exactly once. Marking first would risk the opposite, a line marked synced that the coordinator
    never received, which is lost money.

    2xx marks a line synced; 408, 429, 5xx and transport failures leave it pending with exponential
    backoff and jitter (`BackoffPolicy`, drawn from the injected random source); 400, 409 and 422 mark it
    rejected with the coordinator's reason, never retried automatically. Any other answer (401, 403,
    404, 3xx) means the integration is misconfigured: the run stops at once, nothing more is marked, and
    the reason is kept (`BillingLedger.set_blocked`) until a later run gets a record-level answer. The
    first line of a run goes alone, so a misconfigured coordinator costs one request, not a batch. The
    api_calls lines of closed hours are derived first, so they go out in the same run.
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
        claim = self._random.new_id()
        run = _Run()
        sent = failed = rejected = skipped = 0
        after_id = 0
        while not run.stopped:
            now = self._clock.now()
            entries = await self._ledger.claim_pending(
                claim=claim,
                after_id=after_id,
                limit=self._limits.batch_size,
                due_at=now if request.respect_backoff else None,
                selection=selection,
                now=now,
                claim_until=now + timedelta(seconds=self._limits.claim_seconds),
            )
            await self._uow.commit()
            if not entries:
                break
            batch = _Batch()
            try:
                await self._send(entries, run, batch)
            finally:
                # Whatever happened, the outcomes known so far are kept and the claim is dropped.
                await self._mark(batch, claim)
            sent += len(batch.accepted)
            failed += len(batch.retry)
            rejected += len(batch.rejected)
            skipped += batch.skipped
            after_id = entries[-1].id
            if len(entries) < self._limits.batch_size:
                break
        if run.blocked is not None:
            await self._ledger.set_blocked(run.blocked, self._clock.now())
        elif sent or rejected:
            await self._ledger.set_blocked(None, self._clock.now())
        pending = await self._ledger.count_pending(selection)
        everything = PendingSelection()
        pending_total = pending if selection == everything else await self._ledger.count_pending(everything)
        blocked = await self._ledger.blocked_reason()
        await self._uow.commit()
        return SyncReport(
            records_sent=sent,
            records_failed=failed,
            records_rejected=rejected,
            records_pending=pending,
            pending_total=pending_total,
            records_skipped=skipped,
            api_calls_added=api_calls_added,
            stopped_early=run.stopped,
            billing_blocked=blocked,
        )

    async def _send(self, entries: Sequence[LedgerEntry], run: _Run, batch: _Batch) -> None:
        queue = iter(entries)
        threshold = self._limits.breaker_threshold

        async def attempt(entry: LedgerEntry) -> None:
            if run.stopped:
                batch.skipped += 1
                return
            try:
                await self._gateway.send_usage(entry.record)
            except BillingUnavailableError as exc:
                batch.retry.append((entry, exc.message))
                run.failures_in_a_row += 1
                run.tripped = run.failures_in_a_row >= threshold
            except BillingMisconfiguredError as exc:
                batch.skipped += 1  # not this record's fault: it stays pending, untouched
                run.blocked = run.blocked or _blocked_sentence(exc)
            except BillingRejectedError as exc:
                batch.rejected.append((entry.id, exc.message))
                run.failures_in_a_row = 0
            else:
                batch.accepted.append(entry.id)
                run.failures_in_a_row = 0

        async def worker() -> None:
            for entry in queue:  # one shared iterator: each worker takes the next line when it is free
                await attempt(entry)

        if not run.probed:
            run.probed = True
            await attempt(next(queue))
        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._limits.concurrency, len(entries))):
                group.create_task(worker())

    async def _mark(self, batch: _Batch, claim: str) -> None:
        now = self._clock.now()
        await self._ledger.mark_synced(batch.accepted, now, claim)
        await self._ledger.mark_retry(
            [
                RetryMark(
                    id=entry.id,
                    next_attempt_at=now
                    + timedelta(seconds=self._backoff.delay(entry.attempts + 1, self._random.random())),
                    error=error,
                )
                for entry, error in batch.retry
            ],
            claim,
        )
        await self._ledger.mark_rejected(batch.rejected, now, claim)
        await self._ledger.release(claim)
        await self._uow.commit()
