"""The clock, randomness, token source, transactions and the scheduler's tick lock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol, TypeVar

_T = TypeVar("_T")


class Clock(Protocol):
    """The current time, always an aware UTC datetime."""

    def now(self) -> datetime: ...


class TokenSource(Protocol):
    """Unpredictable session tokens (at least 128 bits of entropy)."""

    def new_token(self) -> str: ...


class RandomSource(Protocol):
    """Randomness the core may not take from the global state, so tests can fix it."""

    def random(self) -> float:
        """A uniform draw in [0, 1)."""
        ...

    def new_id(self) -> str:
        """A fresh unique id (32 lower-case hex characters)."""
        ...


class UnitOfWork(Protocol):
    """One transaction. Nothing is saved unless `commit` is awaited; closing without it rolls back."""

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...

    async def run(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """Run `work` (which commits) as one transaction; a transaction that lost a race with another
        (deadlock, serialization failure) is rolled back and run again, a bounded number of times."""
        ...


class TickLock(Protocol):
    """Claims one scheduled run across every process sharing the database. Commits its own claim."""

    async def claim(self, job: str, tick_at: datetime, now: datetime) -> bool:
        """True for exactly one caller per (job, tick_at)."""
