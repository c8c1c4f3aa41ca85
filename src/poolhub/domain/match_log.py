"""Answered match requests waiting to be saved, and the recent job → tenant map feedback needs."""

from __future__ import annotations

from collections import OrderedDict

from poolhub.domain.ports import MatchRecord


class MatchLog:
    """Match records are saved off the hot path in batches; the flusher drains this buffer.

    It also remembers the tenant of recent jobs, so feedback arriving before the batch is saved can
    still bill the right tenant.
    """

    def __init__(self, remember_jobs: int = 200_000) -> None:
        self._pending: list[MatchRecord] = []
        self._tenants: OrderedDict[str, str | None] = OrderedDict()
        self._remember = remember_jobs

    def add(self, record: MatchRecord) -> None:
        self._pending.append(record)
        self._tenants[record.job_id] = record.tenant_id
        self._tenants.move_to_end(record.job_id)
        if len(self._tenants) > self._remember:
            self._tenants.popitem(last=False)

    def take(self) -> list[MatchRecord]:
        pending, self._pending = self._pending, []
        return pending

    def requeue(self, records: list[MatchRecord]) -> None:
        self._pending = records + self._pending

    def pending_count(self) -> int:
        return len(self._pending)

    def knows_job(self, job_id: str) -> bool:
        return job_id in self._tenants

    def tenant_of_job(self, job_id: str) -> str | None:
        return self._tenants.get(job_id)
