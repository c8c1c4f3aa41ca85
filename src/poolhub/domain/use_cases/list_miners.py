"""The operator's view of the directory, answered from memory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from poolhub.domain.model import Miner
from poolhub.domain.ports import Clock, LiveState


@dataclass(frozen=True, slots=True)
class MinerView:
    miner: Miner
    online: bool
    lease_expires_at: datetime
    trust_score: float
    trust_samples: float


@dataclass(frozen=True, slots=True)
class MinerPage:
    items: tuple[MinerView, ...]
    total: int


class ListMiners:
    """Miners ordered by id, optionally only online (or only offline) ones."""

    def __init__(self, directory: LiveState, clock: Clock) -> None:
        self._directory = directory
        self._clock = clock

    def execute(self, *, online: bool | None, offset: int, limit: int) -> MinerPage:
        now = self._clock.now()
        directory = self._directory
        selected = sorted(
            (m for m in directory.miners() if online is None or directory.is_online(m, now) == online),
            key=lambda m: m.miner_id,
        )
        page = selected[offset : offset + limit]
        return MinerPage(
            items=tuple(
                MinerView(
                    miner=m,
                    online=directory.is_online(m, now),
                    lease_expires_at=directory.lease.lease_expires_at(m.status),
                    trust_score=directory.trust.score(m.trust, now),
                    trust_samples=directory.trust.samples(m.trust, now),
                )
                for m in page
            ),
            total=len(selected),
        )
