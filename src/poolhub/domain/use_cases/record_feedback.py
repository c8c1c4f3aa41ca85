"""Record the coordinator's feedback on a job: trust moves, and a completed job becomes billable usage."""

from __future__ import annotations

from dataclasses import dataclass, replace

from poolhub.domain.billing import UnitPrices, usage_from_completed_job
from poolhub.domain.errors import MinerNotFoundError
from poolhub.domain.ports import (
    ChangeKind,
    ChangeLog,
    Clock,
    FeedbackEntry,
    FeedbackRepository,
    LiveState,
    MatchRecordRepository,
    MinerRepository,
    UnitOfWork,
    UsageLedger,
)
from poolhub.domain.trust import Outcome

# A feedback latency moves the miner's eta by this share; a heartbeat's own average replaces it.
LATENCY_SMOOTHING = 0.3


@dataclass(frozen=True, slots=True)
class Feedback:
    job_id: str
    miner_id: str
    outcome: Outcome
    latency_ms: float | None = None
    duration_ms: float | None = None
    fail_code: str | None = None
    tokens_spent: float | None = None
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    recorded: bool
    trust_score: float


class RecordFeedback:
    """Idempotent on (job_id, miner_id, outcome): a repeat changes nothing and says "duplicate".

    The feedback row, the new trust and any usage records are written in one transaction, so a
    completed job is billed exactly when its feedback is stored. Raises MinerNotFoundError.
    """

    def __init__(
        self,
        feedback: FeedbackRepository,
        miners: MinerRepository,
        matches: MatchRecordRepository,
        ledger: UsageLedger,
        uow: UnitOfWork,
        directory: LiveState,
        prices: UnitPrices,
        clock: Clock,
        changes: ChangeLog,
    ) -> None:
        self._feedback = feedback
        self._miners = miners
        self._matches = matches
        self._ledger = ledger
        self._uow = uow
        self._directory = directory
        self._prices = prices
        self._clock = clock
        self._changes = changes

    async def execute(self, fb: Feedback) -> FeedbackResult:
        # Resolved before the transaction: waiting for another process's match record holds no lock.
        match_tenant = await self._match_tenant(fb) if fb.outcome is Outcome.COMPLETED else None
        return await self._uow.run(lambda: self._execute(fb, match_tenant))

    async def _execute(self, fb: Feedback, match_tenant: str | None) -> FeedbackResult:
        now = self._clock.now()
        trust_policy = self._directory.trust
        miner = await self._miners.get_for_update(fb.miner_id)
        if miner is None:
            raise MinerNotFoundError(f"miner '{fb.miner_id}' is not registered")
        new = await self._feedback.add(
            FeedbackEntry(
                job_id=fb.job_id,
                miner_id=fb.miner_id,
                outcome=fb.outcome.value,
                created_at=now,
                latency_ms=fb.latency_ms,
                duration_ms=fb.duration_ms,
                fail_code=fb.fail_code,
                tokens_spent=fb.tokens_spent,
                tenant_id=fb.tenant_id,
            )
        )
        if not new:
            return FeedbackResult(False, trust_policy.score(miner.trust, now))
        trust = trust_policy.observe(miner.trust, fb.outcome, now)
        await self._miners.save_trust(fb.miner_id, trust, now)
        if fb.outcome is Outcome.COMPLETED:
            await self._ledger.add(
                usage_from_completed_job(
                    job_id=fb.job_id,
                    miner_id=fb.miner_id,
                    tenant_id=fb.tenant_id,
                    match_tenant_id=match_tenant,
                    duration_ms=fb.duration_ms,
                    latency_ms=fb.latency_ms,
                    gpu_count=miner.spec.gpu_count,
                    completed_at=now,
                    prices=self._prices,
                )
            )
        await self._changes.record(ChangeKind.TRUST, [fb.miner_id], now)
        await self._uow.commit()

        if self._directory.get(fb.miner_id) is None:
            self._directory.adopt([miner], now)
        self._directory.set_trust(fb.miner_id, trust, now)
        if fb.latency_ms is not None:
            self._observe_latency(fb.miner_id, fb.latency_ms)
        return FeedbackResult(True, trust_policy.score(trust, now))

    async def _match_tenant(self, fb: Feedback) -> str | None:
        """The tenant of the job's match request, whichever process answered it: this process
        remembers its own; another process's may still be queued, so wait until they are saved."""
        if fb.tenant_id is not None:
            return None
        if self._directory.knows_job(fb.job_id):
            return self._directory.tenant_of_job(fb.job_id)
        await self._directory.await_saved_matches()
        return await self._matches.tenant_of_job(fb.job_id)

    def _observe_latency(self, miner_id: str, latency_ms: float) -> None:
        miner = self._directory.get(miner_id)
        if miner is None:
            return
        previous = miner.status.avg_latency_ms
        eta = latency_ms if previous is None else previous + LATENCY_SMOOTHING * (latency_ms - previous)
        self._directory.update_status(miner_id, replace(miner.status, avg_latency_ms=eta))
