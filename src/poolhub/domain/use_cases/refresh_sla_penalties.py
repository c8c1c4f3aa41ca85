"""RefreshSlaPenalties: turn the open SLA violations into the match-score penalties of this process."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from poolhub.domain.ports import LiveState, OpenViolationKey, SlaRepository
from poolhub.domain.sla import MetricType, penalties_by_miner


def apply_open_violations(keys: Sequence[OpenViolationKey], directory: LiveState) -> dict[str, int]:
    """Set every miner's `sla_penalty` from its open violations; returns the open count of each type."""
    directory.set_penalties(penalties_by_miner((key.miner_id, key.violation_type) for key in keys))
    counts = Counter(key.violation_type for key in keys)
    return {metric_type.value: counts.get(metric_type.value, 0) for metric_type in MetricType}


class RefreshSlaPenalties:
    """Reload the open violations (whichever process opened them) into the in-memory match index.

    Reads only; run at start-up, every few seconds and after each collection, so an open violation
    lowers the miner's score in every process and a resolved one stops doing so.
    """

    def __init__(self, sla: SlaRepository, directory: LiveState) -> None:
        self._sla = sla
        self._directory = directory

    async def execute(self) -> dict[str, int]:
        return apply_open_violations(await self._sla.open_violation_keys(), self._directory)
