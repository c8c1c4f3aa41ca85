"""LiveDirectory: the live state of one process, and the only owner of its buffers.

Hot paths (heartbeats, matching, token checks) read and write it without a database round trip. It
queues what must be saved (beats coalesced per miner, match records) in bounded queues, saves them in
batches that isolate rows the database refuses, and catches up with other processes by reading the
change feed ("seq > last seen"), never by wall-clock stamps.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from poolhub.adapters.live.feed import ChangeSource
from poolhub.adapters.live.tokens import TokenCache
from poolhub.adapters.live.writebehind import LiveStore, PendingBeat, save_isolating
from poolhub.domain.matching import IndexedMiner, MinerIndex
from poolhub.domain.model import LeasePolicy, Miner, MinerStatus, Trust
from poolhub.domain.ports import ChangeKind, Clock, LiveState, MatchRecord
from poolhub.domain.trust import TrustPolicy

DEFAULT_QUEUE_MAX = 100_000
# Presence-interval ends and session expiries move with every beat but matter at a coarser grain.
PRESENCE_STEP = timedelta(seconds=5)
FEED_PAGE = 5000
# How long a feedback for an unknown job waits for other processes' match records, polled every
# MATCH_POLL_SEC; a process silent for PROCESS_SILENT_AFTER is not waited for (it died).
MATCH_WAIT_SEC = 2.0
MATCH_POLL_SEC = 0.05
PROCESS_SILENT_AFTER = timedelta(seconds=3)
# Beats are soft state, read by the writer's clock: another process stamps its flush before the commit
# lands, so each read reaches this far back. A beat missed anyway is corrected by the miner's next one.
STATUS_OVERLAP = timedelta(seconds=2)
# Kinds after which the stored status is the truth: another process re-registered or logged the miner
# out, so a beat this process still holds (taken with a token that is now revoked) must not survive.
_AUTHORITATIVE = frozenset(
    {ChangeKind.REGISTERED, ChangeKind.LOGOUT, ChangeKind.REVOKED, ChangeKind.RETURNED}
)

DropHook = Callable[[str, int], None]


def _ignore_drop(_kind: str, _count: int) -> None:
    return None


class LiveDirectory(LiveState):
    """All registered miners, the hashes of their live tokens, the match index and the write-behind."""

    def __init__(
        self,
        lease: LeasePolicy,
        trust: TrustPolicy,
        clock: Clock,
        store: LiveStore | None = None,
        feed: ChangeSource | None = None,
        queue_max: int = DEFAULT_QUEUE_MAX,
        on_drop: DropHook = _ignore_drop,
        remember_jobs: int = 200_000,
    ) -> None:
        self.lease = lease
        self.trust = trust
        self.index = MinerIndex()
        self.origin = str(uuid.uuid4())
        self.seen_seq = 0
        self._statuses_read_at: datetime | None = None
        self._clock = clock
        self._store = store
        self._feed = feed
        self._queue_max = queue_max
        self._on_drop = on_drop
        self._miners: dict[str, Miner] = {}
        self._tokens = TokenCache()
        self._penalties: dict[str, float] = {}
        # miner id -> latest unsaved status, oldest first (a new beat moves its miner to the end)
        self._beats: OrderedDict[str, MinerStatus] = OrderedDict()
        self._records: deque[MatchRecord] = deque()
        self._tenants: OrderedDict[str, str | None] = OrderedDict()
        self._remember = remember_jobs
        # miner id -> (interval start, interval end) as last written to presence history
        self._presence_written: dict[str, tuple[datetime, datetime]] = {}
        self.dropped: dict[str, int] = {"beat": 0, "match_record": 0}

    def __len__(self) -> int:
        return len(self._miners)

    def get(self, miner_id: str) -> Miner | None:
        return self._miners.get(miner_id)

    def miners(self) -> Iterable[Miner]:
        return self._miners.values()

    def put(self, miner: Miner, now: datetime) -> None:
        self._beats.pop(miner.miner_id, None)
        self._store_miner(miner, now)

    def _store_miner(self, miner: Miner, now: datetime) -> None:
        if miner.miner_id not in self._miners:
            # Only a new miner can share an API key with a cached one (a miner's key never changes).
            self._tokens.api_keys_changed()
        self._miners[miner.miner_id] = miner
        self.index.upsert(self._indexed(miner, now))

    def adopt(self, stored: Iterable[Miner], now: datetime) -> None:
        for row in stored:
            cached = self._miners.get(row.miner_id)
            if cached is None:
                self._store_miner(row, now)
                continue
            status = row.status if row.status.event_at > cached.status.event_at else cached.status
            trust = row.trust if _newer(row.trust, cached.trust) else cached.trust
            merged = replace(row, status=status, trust=trust)
            if merged != cached:
                self._store_miner(merged, now)

    def beat(self, miner_id: str, now: datetime, **changes: object) -> Miner:
        miner = self._miners[miner_id]
        status = self.lease.beat(miner.status, now, **changes)
        updated = replace(miner, status=status)
        self._miners[miner_id] = updated
        self.index.update_status(
            miner_id,
            queue_len=status.queue_len,
            busy=status.busy,
            lease_expires_at=self._lease_epoch(status),
            eta_ms=status.avg_latency_ms,
        )
        self._queue_beat(miner_id, status)
        return updated

    async def bring_back(self, miner_id: str, status: MinerStatus, now: datetime) -> None:
        if self._store is not None:
            await self._store.save_return(miner_id, status, now, self.origin)
        self.put(replace(self._miners[miner_id], status=status), now)

    def update_status(self, miner_id: str, status: MinerStatus) -> None:
        miner = self._miners[miner_id]
        self._miners[miner_id] = replace(miner, status=status)
        self.index.update_status(miner_id, eta_ms=status.avg_latency_ms)
        self._queue_beat(miner_id, status)

    def _queue_beat(self, miner_id: str, status: MinerStatus) -> None:
        self._beats.pop(miner_id, None)
        self._beats[miner_id] = status
        if len(self._beats) > self._queue_max:
            # Coalesced, not lost from memory: the miner's next beat queues its status again.
            self._beats.popitem(last=False)
            self._count_drop("beat", 1)

    def is_online(self, miner: Miner, now: datetime) -> bool:
        return self.lease.is_online(miner.status, now)

    def online_count(self, now: datetime) -> int:
        return self.index.online_count(now.timestamp())

    def avg_latency_ms(self, now: datetime) -> float | None:
        return self.index.avg_eta_ms(now.timestamp())

    # Session tokens -----------------------------------------------------------------------------

    def remember_token(self, token_hash: str, miner_id: str) -> None:
        self._tokens.remember(token_hash, miner_id)

    def forget_tokens(self, token_hashes: Iterable[str]) -> None:
        self._tokens.forget(token_hashes)

    def miner_for_token(self, token_hash: str) -> str | None:
        return self._tokens.miner_for(token_hash)

    def remember_api_key(self, key_hash: str, miner_ids: tuple[str, ...]) -> None:
        self._tokens.remember_api_key(key_hash, miner_ids)

    def miners_for_api_key(self, key_hash: str) -> tuple[str, ...] | None:
        return self._tokens.miners_for_api_key(key_hash)

    def api_keys_changed(self) -> None:
        self._tokens.api_keys_changed()

    def is_unknown_token(self, token_hash: str, now: datetime) -> bool:
        return self._tokens.unknown.contains(token_hash, now)

    def remember_unknown_token(self, token_hash: str, now: datetime) -> None:
        self._tokens.unknown.add(token_hash, now)

    # Trust and penalties ------------------------------------------------------------------------

    def set_trust(self, miner_id: str, trust: Trust, now: datetime) -> None:
        miner = self._miners[miner_id]
        self._miners[miner_id] = replace(miner, trust=trust)
        self.index.update_trust(miner_id, self.trust.score(trust, now), self.trust.samples(trust, now))

    def refresh_trust(self, now: datetime) -> None:
        """Re-age every miner's trust: with no new evidence it drifts back toward the prior."""
        for miner in self._miners.values():
            self.index.update_trust(
                miner.miner_id, self.trust.score(miner.trust, now), self.trust.samples(miner.trust, now)
            )

    def set_penalties(self, penalties: dict[str, float]) -> None:
        for miner_id in self._penalties.keys() - penalties.keys():
            self.index.set_penalty(miner_id, 1.0)
        for miner_id, factor in penalties.items():
            self.index.set_penalty(miner_id, factor)
        self._penalties = dict(penalties)

    def penalty_of(self, miner_id: str) -> float:
        return self._penalties.get(miner_id, 1.0)

    # Match records ------------------------------------------------------------------------------

    def record_match(self, record: MatchRecord) -> None:
        if len(self._records) >= self._queue_max:
            self._count_drop("match_record", 1)
        else:
            self._records.append(record)
        self._tenants[record.job_id] = record.tenant_id
        self._tenants.move_to_end(record.job_id)
        if len(self._tenants) > self._remember:
            self._tenants.popitem(last=False)

    def knows_job(self, job_id: str) -> bool:
        return job_id in self._tenants

    def tenant_of_job(self, job_id: str) -> str | None:
        return self._tenants.get(job_id)

    # Write-behind -------------------------------------------------------------------------------

    def pending_beats(self) -> int:
        return len(self._beats)

    def pending_match_records(self) -> int:
        return len(self._records)

    def _count_drop(self, kind: str, count: int) -> None:
        self.dropped[kind] = self.dropped.get(kind, 0) + count
        self._on_drop(kind, count)

    async def flush(self, *, exact: bool = False) -> None:
        """Save beats, then match records, each batch in its own transaction.

        A batch the database cannot take now (an outage, a lost race) goes back to the queue whole and
        the error propagates; rows whose data it refuses are dropped and counted, the rest saved.
        """
        try:
            await self.flush_beats(exact=exact)
        finally:
            await self.flush_match_records()

    async def flush_match_records(self) -> int:
        if self._store is None:
            return 0
        taken_at = self._clock.now()
        if not self._records:
            await self._store.mark_matches_saved(self.origin, taken_at, taken_at)
            return 0
        records = list(self._records)
        self._records.clear()
        try:
            dropped = await save_isolating(
                records,
                self._store.save_match_records,
                lambda r: {"job_id": r.job_id, "tenant_id": r.tenant_id},
                "match_record",
            )
        except Exception:
            self._requeue_records(records)
            raise
        if dropped:
            self._count_drop("match_record", len(dropped))
        await self._store.mark_matches_saved(self.origin, taken_at, self._clock.now())
        return len(records) - len(dropped)

    async def await_saved_matches(self) -> None:
        """Return once every other live process has saved the matches it answered before now, or
        after MATCH_WAIT_SEC: a feedback can reach this process before another saved its match."""
        if self._store is None:
            return
        asked_at = self._clock.now()
        # A deadline, not a count of polls: under load each poll's query is slow too.
        deadline = time.monotonic() + MATCH_WAIT_SEC
        while True:
            alive_after = self._clock.now() - PROCESS_SILENT_AFTER
            if not await self._store.lagging_processes(self.origin, asked_at, alive_after):
                return
            if time.monotonic() + MATCH_POLL_SEC >= deadline:
                return
            await asyncio.sleep(MATCH_POLL_SEC)

    async def leave(self) -> None:
        """This process stops serving: others no longer wait on its match-record watermark."""
        if self._store is not None:
            await self._store.forget_process(self.origin)

    def _requeue_records(self, records: list[MatchRecord]) -> None:
        room = max(0, self._queue_max - len(self._records))
        keep = records[len(records) - room :] if room < len(records) else records
        if len(keep) < len(records):
            self._count_drop("match_record", len(records) - len(keep))
        self._records.extendleft(reversed(keep))

    async def flush_beats(self, *, exact: bool = False) -> int:
        if self._store is None or not self._beats:
            return 0
        taken = list(self._beats.items())
        self._beats.clear()
        beats = [PendingBeat(m, s, self._due_presence_end(m, s, exact)) for m, s in taken]
        try:
            dropped = await save_isolating(
                beats,
                lambda batch: self._store.save_beats(batch, self._clock.now()),  # type: ignore[union-attr]
                lambda b: {"miner_id": b.miner_id},
                "beat",
            )
        except Exception:
            for miner_id, status in reversed(taken):
                if miner_id not in self._beats:  # a newer beat arrived meanwhile: it wins
                    self._beats[miner_id] = status
                    self._beats.move_to_end(miner_id, last=False)
            raise
        if dropped:
            self._count_drop("beat", len(dropped))
        lost = {b.miner_id for b in dropped}
        for beat in beats:
            since = beat.status.online_since
            if beat.presence_end is not None and since is not None and beat.miner_id not in lost:
                self._presence_written[beat.miner_id] = (since, beat.presence_end)
        return len(beats) - len(dropped)

    def _due_presence_end(self, miner_id: str, status: MinerStatus, exact: bool) -> datetime | None:
        if status.online_since is None:
            return None
        end = self.lease.presence_end(status)
        written = self._presence_written.get(miner_id)
        if exact or written is None or written[0] != status.online_since or end - written[1] >= PRESENCE_STEP:
            return end
        return None

    # Change feed --------------------------------------------------------------------------------

    async def warm(self) -> None:
        """Load every miner; changes committed from here on are read from the feed."""
        assert self._feed is not None
        started = self._clock.now()
        head = await self._feed.head()
        miners = await self._feed.all_miners()
        self.seen_seq = max(self.seen_seq, head)
        self._statuses_read_at = started
        self.adopt(miners, self._clock.now())

    async def catch_up(self) -> bool:
        """Apply the changes other processes committed since the last call; True if SLA penalties changed.

        Statuses first: a status read before a logout committed is applied before the logout is."""
        if self._feed is None:
            return False
        await self._catch_up_statuses()
        penalties = False
        while True:
            changes = await self._feed.after(self.seen_seq, FEED_PAGE)
            if not changes:
                return penalties
            kinds: dict[str, set[ChangeKind]] = {}
            for change in changes:
                if change.origin == self.origin:
                    continue
                if change.kind is ChangeKind.PENALTIES:
                    penalties = True
                elif change.miner_id is not None:
                    kinds.setdefault(change.miner_id, set()).add(change.kind)
            if kinds:
                miners, tokens = await self._feed.load(sorted(kinds))
                self.apply_changes(kinds, miners, tokens)
            self.seen_seq = changes[-1].seq
            if len(changes) < FEED_PAGE:
                return penalties

    async def _catch_up_statuses(self) -> None:
        """Beats other processes saved (their queue, load, lease): newer than what this process holds."""
        assert self._feed is not None
        if self._statuses_read_at is None:
            return
        started = self._clock.now()
        rows = await self._feed.statuses_since(self._statuses_read_at - STATUS_OVERLAP)
        self._statuses_read_at = started
        for miner_id, status in rows:
            cached = self._miners.get(miner_id)
            # An unknown miner arrives through the feed; an older status is what this process replaced.
            if cached is None or status.event_at <= cached.status.event_at:
                continue
            self._miners[miner_id] = replace(cached, status=status)
            self.index.update_status(
                miner_id,
                queue_len=status.queue_len,
                busy=status.busy,
                lease_expires_at=self._lease_epoch(status),
                eta_ms=status.avg_latency_ms,
            )

    def apply_changes(
        self, kinds: dict[str, set[ChangeKind]], miners: dict[str, Miner], tokens: dict[str, list[str]]
    ) -> None:
        now = self._clock.now()
        if any(ChangeKind.API_KEY in changed for changed in kinds.values()):
            self._tokens.api_keys_changed()
        for miner_id, changed in kinds.items():
            stored = miners.get(miner_id)
            if stored is None:
                continue
            cached = self._miners.get(miner_id)
            if cached is None or changed & _AUTHORITATIVE:
                self._beats.pop(miner_id, None)
                self._tokens.forget_miner(miner_id)
                for token_hash in tokens.get(miner_id, []):
                    self.remember_token(token_hash, miner_id)
                self._store_miner(stored, now)
            else:  # specification or trust: the status this process holds may be newer
                trust = stored.trust if _newer(stored.trust, cached.trust) else cached.trust
                self._store_miner(replace(stored, status=cached.status, trust=trust), now)

    # Mapping to the index -----------------------------------------------------------------------

    def _lease_epoch(self, status: MinerStatus) -> float:
        if status.logged_out_at is not None:
            return float("-inf")
        return self.lease.lease_expires_at(status).timestamp()

    def _indexed(self, miner: Miner, now: datetime) -> IndexedMiner:
        spec = miner.spec
        return IndexedMiner(
            miner_id=spec.miner_id,
            addr=spec.addr,
            proto=spec.proto,
            gpu_vram_gb=spec.gpu_vram_gb,
            ram_gb=spec.ram_gb,
            accel=spec.accel,
            region=spec.region,
            tags=spec.tags,
            capabilities=spec.capabilities,
            price=spec.price_token_per_ksec,
            max_parallel=spec.max_parallel,
            queue_len=miner.status.queue_len,
            busy=miner.status.busy,
            lease_expires_at=self._lease_epoch(miner.status),
            eta_ms=miner.status.avg_latency_ms,
            trust=self.trust.score(miner.trust, now),
            trust_samples=self.trust.samples(miner.trust, now),
            sla_penalty=self._penalties.get(spec.miner_id, 1.0),
        )


def _newer(candidate: Trust, current: Trust) -> bool:
    if candidate.as_of is None:
        return False
    return current.as_of is None or candidate.as_of > current.as_of
