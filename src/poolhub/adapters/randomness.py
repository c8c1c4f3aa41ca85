"""Real randomness behind the RandomSource port (retry jitter, ids of manual ledger records)."""

from __future__ import annotations

import random
import uuid

from poolhub.domain.ports import RandomSource


class SystemRandomSource(RandomSource):
    """Jitter needs no secrecy, so `random` is enough; ids are uuid4."""

    def __init__(self) -> None:
        self._random = random.Random()

    def random(self) -> float:
        return self._random.random()

    def new_id(self) -> str:
        return uuid.uuid4().hex
