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
    """Runs of periodic jobs across every process sharing the database: a lease on each job (who runs it
    right now, scheduled or by hand) and the ticks that ran to their end. Each method commits its own
    short transaction, apart from any job's."""

    async def acquire(self, job: str, holder: str, now: datetime, until: datetime) -> bool:
        """Take the job's lease for `holder` until `until`; False while another holder's lease is live."""
        ...

    async def renew(self, job: str, holder: str, until: datetime) -> bool:
        """Extend the lease; False when `holder` no longer holds it."""
        ...

    async def release(self, job: str, holder: str) -> None: ...

    async def tick_done(self, job: str, tick_at: datetime) -> bool:
        """Whether that tick's run finished (a started run that crashed does not count)."""
        ...

    async def start_tick(self, job: str, tick_at: datetime, holder: str, now: datetime) -> None:
        """Record who runs the tick (under the job's lease)."""

    async def finish_tick(self, job: str, tick_at: datetime, now: datetime) -> None:
        """Mark the tick done: no process runs it again."""
