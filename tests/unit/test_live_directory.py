"""The live directory's write-behind and change feed through fakes: bad rows isolated, outages lose
nothing, queues bounded, other processes' changes applied by sequence; and the quiet background loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import DataError, OperationalError
from structlog.testing import capture_logs

from poolhub.adapters.live import LiveDirectory
from poolhub.adapters.live.feed import Change
from poolhub.adapters.live.writebehind import PendingBeat
from poolhub.app.runtime.background import MAX_BACKOFF_SEC, QuietLoop
from poolhub.domain.model import LeasePolicy, Miner, MinerSpec, MinerStatus, Trust
from poolhub.domain.ports import ChangeKind, MatchRecord
from poolhub.domain.trust import TrustPolicy
from tests.fakes import FixedClock

LEASE = LeasePolicy(120, 60)


def refused() -> DataError:
    return DataError("INSERT …", None, Exception("unsupported Unicode escape sequence"))


def outage() -> OperationalError:
    return OperationalError("INSERT …", None, ConnectionRefusedError("connection refused"))


class FakeStore:
    """Refuses any batch holding a poisoned row; `down` makes every call fail like an outage."""

    def __init__(self) -> None:
        self.beats: dict[str, MinerStatus] = {}
        self.records: list[MatchRecord] = []
        self.poison: set[str] = set()
        self.down = False
        self.calls = 0
        self.watermarks: dict[str, datetime] = {}
        self.returns: list[tuple[str, MinerStatus, str]] = []

    async def save_beats(self, beats: Sequence[PendingBeat], now: datetime) -> None:
        self.calls += 1
        if self.down:
            raise outage()
        if any(b.miner_id in self.poison for b in beats):
            raise refused()
        self.beats.update({b.miner_id: b.status for b in beats})

    async def save_match_records(self, records: Sequence[MatchRecord]) -> None:
        self.calls += 1
        if self.down:
            raise outage()
        if any(r.job_id in self.poison for r in records):
            raise refused()
        self.records.extend(records)

    async def save_return(self, miner_id: str, status: MinerStatus, now: datetime, origin: str) -> None:
        if self.down:
            raise outage()
        self.returns.append((miner_id, status, origin))

    async def mark_matches_saved(self, origin: str, until: datetime, now: datetime) -> None:
        if self.down:
            raise outage()
        self.watermarks[origin] = until

    async def lagging_processes(self, origin: str, before: datetime, alive_after: datetime) -> int:
        return sum(1 for o, at in self.watermarks.items() if o != origin and at < before)

    async def forget_process(self, origin: str) -> None:
        self.watermarks.pop(origin, None)


class FakeFeed:
    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.miners: dict[str, Miner] = {}
        self.tokens: dict[str, list[str]] = {}
        # (written at, miner id, status) as other processes' beat flushes saved them
        self.statuses: list[tuple[datetime, str, MinerStatus]] = []
        self.status_reads: list[datetime] = []

    async def statuses_since(self, since: datetime) -> list[tuple[str, MinerStatus]]:
        self.status_reads.append(since)
        return [(m, status) for at, m, status in self.statuses if at >= since]

    async def head(self) -> int:
        return self.changes[-1].seq if self.changes else 0

    async def after(self, seq: int, limit: int) -> list[Change]:
        return [c for c in self.changes if c.seq > seq][:limit]

    async def load(self, miner_ids: Sequence[str]) -> tuple[dict[str, Miner], dict[str, list[str]]]:
        return (
            {m: self.miners[m] for m in miner_ids if m in self.miners},
            {m: self.tokens.get(m, []) for m in miner_ids},
        )

    async def all_miners(self) -> list[Miner]:
        return list(self.miners.values())

    def publish(self, kind: ChangeKind, miner_id: str | None, origin: str = "other-process") -> None:
        self.changes.append(Change(len(self.changes) + 1, kind, miner_id, origin))


def record(job_id: str) -> MatchRecord:
    return MatchRecord(job_id, "acme", datetime(2026, 3, 1, 12, 0), {}, [], "", 1, 1)


def miner(miner_id: str, now: datetime, price: str = "0.5") -> Miner:
    spec = MinerSpec(miner_id, "10.0.0.1:9000", "grpc", 24, 8, 64, Decimal(price), 4)
    return Miner(spec, MinerStatus(last_beat_at=now, online_since=now), now, Trust(as_of=now))


class World:
    def __init__(self, queue_max: int = 100) -> None:
        self.clock = FixedClock()
        self.store = FakeStore()
        self.feed = FakeFeed()
        self.drops: list[tuple[str, int]] = []
        self.directory = LiveDirectory(
            LEASE,
            TrustPolicy(),
            self.clock,
            store=self.store,
            feed=self.feed,
            queue_max=queue_max,
            on_drop=lambda kind, n: self.drops.append((kind, n)),
        )

    def add(self, *miner_ids: str) -> None:
        for miner_id in miner_ids:
            self.directory.put(miner(miner_id, self.clock.now()), self.clock.now())


async def test_one_refused_match_record_is_dropped_alone_and_logged_once() -> None:
    w = World()
    for i in range(40):
        w.directory.record_match(record("bad" if i == 17 else f"job-{i}"))
    w.store.poison = {"bad"}
    with capture_logs() as logs:
        saved = await w.directory.flush_match_records()
    assert saved == 39
    assert sorted(r.job_id for r in w.store.records) == sorted(f"job-{i}" for i in range(40) if i != 17)
    assert w.drops == [("match_record", 1)]
    dropped = [e for e in logs if e["event"] == "writebehind_row_dropped"]
    assert [(e["kind"], e["job_id"]) for e in dropped] == [("match_record", "bad")]
    # The queue is empty: the bad row is not retried every tick, and later records flow again.
    assert w.directory.pending_match_records() == 0
    w.directory.record_match(record("job-later"))
    assert await w.directory.flush_match_records() == 1


async def test_an_outage_drops_nothing_and_the_batch_is_saved_once_the_database_is_back() -> None:
    w = World()
    w.add("m-1", "m-2")
    w.directory.beat("m-1", w.clock.now(), queue_len=3)
    w.directory.beat("m-2", w.clock.now(), queue_len=1)
    w.directory.record_match(record("job-1"))
    w.store.down = True
    with pytest.raises(OperationalError):
        await w.directory.flush()
    assert (w.directory.pending_beats(), w.directory.pending_match_records()) == (2, 1)
    assert w.drops == []
    # A beat that arrived during the outage wins over the requeued older one.
    w.clock.advance(timedelta(seconds=1))
    w.directory.beat("m-1", w.clock.now(), queue_len=7)
    w.store.down = False
    await w.directory.flush()
    assert w.store.beats["m-1"].queue_len == 7
    assert w.store.beats["m-2"].queue_len == 1
    assert [r.job_id for r in w.store.records] == ["job-1"]


async def test_a_refused_beat_row_does_not_block_the_others() -> None:
    w = World()
    w.add("m-1", "m-2", "m-3")
    for miner_id in ("m-1", "m-2", "m-3"):
        w.directory.beat(miner_id, w.clock.now(), queue_len=2)
    w.store.poison = {"m-2"}
    assert await w.directory.flush_beats() == 2
    assert sorted(w.store.beats) == ["m-1", "m-3"]
    assert w.drops == [("beat", 1)]


async def test_queues_are_bounded_match_records_counted_as_dropped_and_old_beats_coalesced() -> None:
    w = World(queue_max=3)
    for i in range(5):
        w.directory.record_match(record(f"job-{i}"))
    assert w.directory.pending_match_records() == 3
    w.add(*(f"m-{i}" for i in range(5)))
    for i in range(5):
        w.directory.beat(f"m-{i}", w.clock.now())
    assert w.directory.pending_beats() == 3
    assert w.drops == [("match_record", 1), ("match_record", 1), ("beat", 1), ("beat", 1)]
    # A coalesced beat is not lost from memory: the miner stays online here.
    assert w.directory.is_online(w.directory.get("m-0"), w.clock.now())  # type: ignore[arg-type]


async def test_another_process_logout_revokes_the_token_and_drops_the_late_beat() -> None:
    w = World()
    now = w.clock.now()
    w.add("m-1")
    w.directory.remember_token("tok-1", "m-1")
    w.directory.beat("m-1", now, queue_len=2)  # a beat taken here with the token the logout revokes
    stored = miner("m-1", now)
    w.feed.miners["m-1"] = replace(stored, status=LEASE.logout(stored.status, now))
    w.feed.publish(ChangeKind.LOGOUT, "m-1")
    await w.directory.catch_up()
    assert w.directory.miner_for_token("tok-1") is None
    assert w.directory.pending_beats() == 0
    assert not w.directory.is_online(w.directory.get("m-1"), now)  # type: ignore[arg-type]
    assert w.directory.seen_seq == 1


async def test_a_price_change_elsewhere_keeps_the_newer_status_held_here() -> None:
    w = World()
    now = w.clock.now()
    w.add("m-1")
    w.clock.advance(timedelta(seconds=5))
    w.directory.beat("m-1", w.clock.now(), queue_len=4)
    w.feed.miners["m-1"] = miner("m-1", now, price="0.9")
    w.feed.publish(ChangeKind.SPEC, "m-1")
    await w.directory.catch_up()
    held = w.directory.get("m-1")
    assert held is not None
    assert held.spec.price_token_per_ksec == Decimal("0.9")
    assert held.status.queue_len == 4
    assert w.directory.pending_beats() == 1


async def test_the_feed_skips_own_changes_reads_only_newer_sequences_and_reports_penalties() -> None:
    w = World()
    now = w.clock.now()
    w.add("m-1")
    w.directory.remember_token("tok-1", "m-1")
    w.feed.miners["m-1"] = replace(miner("m-1", now), status=MinerStatus(now, None, now))
    w.feed.publish(ChangeKind.LOGOUT, "m-1", origin=w.directory.origin)
    assert await w.directory.catch_up() is False
    assert w.directory.miner_for_token("tok-1") == "m-1"  # its own change was applied when made
    w.feed.publish(ChangeKind.PENALTIES, None)
    assert await w.directory.catch_up() is True
    assert await w.directory.catch_up() is False  # seq 2 is behind it now
    assert w.directory.seen_seq == 2


async def test_a_new_miner_or_a_rehashed_key_elsewhere_empties_the_key_cache_and_the_misses() -> None:
    w = World()
    now = w.clock.now()
    w.add("m-1")
    for kind, miner_id in [(ChangeKind.API_KEY, "m-1"), (ChangeKind.REGISTERED, "m-2")]:
        w.directory.remember_api_key("key-hash", ("m-1",))
        w.directory.remember_unknown_token("missed-hash", now)
        w.feed.miners[miner_id] = miner(miner_id, now)
        w.feed.publish(kind, miner_id)
        await w.directory.catch_up()
        assert w.directory.miners_for_api_key("key-hash") is None, kind
        assert not w.directory.is_unknown_token("missed-hash", now), kind
    # A change that touches no key (a price) keeps both caches.
    w.directory.remember_api_key("key-hash", ("m-1",))
    w.directory.remember_unknown_token("missed-hash", now)
    w.feed.publish(ChangeKind.SPEC, "m-1")
    await w.directory.catch_up()
    assert w.directory.miners_for_api_key("key-hash") == ("m-1",)
    assert w.directory.is_unknown_token("missed-hash", now)


async def test_a_miner_back_after_its_logout_is_saved_before_it_is_held_and_applied_elsewhere() -> None:
    w = World()
    now = w.clock.now()
    w.add("m-1")
    logged_out = LEASE.logout(miner("m-1", now).status, now)
    w.directory.put(replace(miner("m-1", now), status=logged_out), now)
    w.clock.advance(timedelta(seconds=3))
    back = LEASE.beat(logged_out, w.clock.now())
    w.store.down = True
    with pytest.raises(OperationalError):
        await w.directory.bring_back("m-1", back, w.clock.now())
    assert not w.directory.is_online(w.directory.get("m-1"), w.clock.now())  # type: ignore[arg-type]
    w.store.down = False
    await w.directory.bring_back("m-1", back, w.clock.now())
    assert w.store.returns == [("m-1", back, w.directory.origin)]
    assert w.directory.is_online(w.directory.get("m-1"), w.clock.now())  # type: ignore[arg-type]
    # Another process, which applied the logout, takes the stored status as the truth.
    other = World()
    other.directory.put(replace(miner("m-1", now), status=logged_out), now)
    other.feed.miners["m-1"] = replace(miner("m-1", now), status=back)
    other.feed.publish(ChangeKind.RETURNED, "m-1")
    await other.directory.catch_up()
    assert other.directory.is_online(other.directory.get("m-1"), w.clock.now())  # type: ignore[arg-type]


async def test_beats_saved_by_another_process_are_applied_when_newer_than_what_is_held() -> None:
    w = World()
    start = w.clock.now()
    w.add("m-1", "m-2")
    await w.directory.warm()
    w.clock.advance(timedelta(seconds=10))
    later = w.clock.now()
    w.directory.beat("m-2", later, queue_len=1)  # this process holds a newer beat of m-2
    w.feed.statuses = [
        (later, "m-1", LEASE.beat(miner("m-1", start).status, later - timedelta(seconds=1), queue_len=3)),
        (later, "m-2", LEASE.beat(miner("m-2", start).status, later - timedelta(seconds=1), queue_len=7)),
        (later, "m-9", MinerStatus(last_beat_at=later)),  # not registered here: comes through the feed
    ]
    await w.directory.catch_up()
    assert w.directory.get("m-1").status.queue_len == 3  # type: ignore[union-attr]
    assert w.directory.get("m-2").status.queue_len == 1  # type: ignore[union-attr]
    assert w.directory.get("m-9") is None
    # Each read reaches back over the overlap from when the previous one began.
    w.clock.advance(timedelta(seconds=1))
    await w.directory.catch_up()
    assert w.feed.status_reads[-1] == later - timedelta(seconds=2)


async def test_warm_start_reads_the_head_first_so_later_changes_are_not_missed() -> None:
    w = World()
    now = w.clock.now()
    w.feed.miners["m-1"] = miner("m-1", now)
    w.feed.publish(ChangeKind.REGISTERED, "m-1")
    await w.directory.warm()
    assert w.directory.get("m-1") is not None and w.directory.seen_seq == 1
    w.feed.miners["m-2"] = miner("m-2", now)
    w.feed.tokens["m-2"] = ["tok-2"]
    w.feed.publish(ChangeKind.REGISTERED, "m-2")
    await w.directory.catch_up()
    assert w.directory.miner_for_token("tok-2") == "m-2"


async def test_feedback_waits_only_while_another_process_has_unsaved_matches() -> None:
    w = World()
    await w.directory.await_saved_matches()  # nobody else: no wait
    w.store.watermarks["other"] = w.clock.now() - timedelta(seconds=1)
    w.clock.advance(timedelta(seconds=3))  # the clock stands still in the poll: it waits the bound
    await w.directory.await_saved_matches()
    w.store.watermarks["other"] = w.clock.now() + timedelta(seconds=1)
    await w.directory.await_saved_matches()


async def test_a_failing_loop_backs_off_and_logs_once_at_start_and_once_at_recovery() -> None:
    state = {"fail": True, "runs": 0}

    async def job() -> None:
        state["runs"] += 1
        if state["fail"]:
            raise outage()

    loop = QuietLoop("flush", 0.25, job)
    with capture_logs() as logs:
        delays = []
        for _ in range(10):
            await loop.run_once()
            delays.append(loop.delay())
        state["fail"] = False
        await loop.run_once()
    assert delays[:3] == [0.5, 1.0, 2.0]
    assert delays[-1] == MAX_BACKOFF_SEC
    assert loop.delay() == 0.25
    assert [e["event"] for e in logs] == ["background_job_failing", "background_job_recovered"]
    assert "exc_info" not in logs[0]
