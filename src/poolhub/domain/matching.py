"""Matching a job to miners: hard filters, a weighted score and a vectorised in-memory index."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
HitArray = npt.NDArray[np.uint8] | npt.NDArray[np.uint16]
_Scalar = TypeVar("_Scalar", bound=np.generic)

_WEIGHT_KEYS: Final = ("cap", "price", "latency", "trust", "load")
_WEIGHT_SUM_TOLERANCE: Final = 1e-6

REJECTION_REASONS: Final = (
    "offline",
    "full",
    "vram",
    "ram",
    "accel",
    "tags",
    "capabilities",
    "region",
    "price",
    "deadline",
)

_SEP: Final = " • "
_INITIAL_CAPACITY: Final = 64
# Rounding to 6 decimals moves a score by at most 5e-7; anything that could round level with the k-th best
# score is therefore within this of it.
_SCORE_SLACK: Final = 2e-6
# Below this many scored miners, narrowing the top-k by a sampled threshold costs more than it saves.
_NARROW_MIN: Final = 256
_SAMPLE_SIZE: Final = 512
# Tie groups up to this size are ordered by a Python sort of their ids; larger ones use cached id ranks.
_SMALL_TIE_GROUP: Final = 512
# Added to or taken from the price of ineligible rows so a plain min or max skips them.
_FAR: Final = 1e300
# Token sets whose filter results are kept, per kind (tags, capabilities).
_TOKEN_CACHE_SIZE: Final = 32
# The exploration share is a float, so top_k * share can land a hair under a whole number.
_FLOOR_EPSILON: Final = 1e-9


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each score term counts: five finite non-negative weights that sum to 1."""

    cap: float
    price: float
    latency: float
    trust: float
    load: float

    def __post_init__(self) -> None:
        for key, value in zip(_WEIGHT_KEYS, self._values(), strict=True):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"weight {key}={value!r} must be a finite number >= 0")
        total = math.fsum(self._values())
        if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"weights must sum to 1 (±1e-6), got {total:.9g}")

    def _values(self) -> tuple[float, float, float, float, float]:
        return (self.cap, self.price, self.latency, self.trust, self.load)

    @classmethod
    def parse(cls, text: str) -> Weights:
        """Read `cap:0.40,price:0.20,latency:0.20,trust:0.15,load:0.05`; ValueError names what is wrong."""
        if not text.strip():
            raise ValueError("weights are empty; expected 'cap:…,price:…,latency:…,trust:…,load:…'")
        values: dict[str, float] = {}
        for item in text.split(","):
            name, sep, raw = (part.strip() for part in item.partition(":"))
            if not sep or not name or not raw:
                raise ValueError(f"weight item {item.strip()!r} is not of the form name:value")
            if name not in _WEIGHT_KEYS:
                raise ValueError(f"unknown weight {name!r}; expected {', '.join(_WEIGHT_KEYS)}")
            if name in values:
                raise ValueError(f"weight {name!r} is given twice")
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"weight {name}={raw!r} is not a number") from None
        missing = [key for key in _WEIGHT_KEYS if key not in values]
        if missing:
            raise ValueError(f"missing weight(s): {', '.join(missing)}")
        return cls(**values)


DEFAULT_WEIGHTS: Final = Weights(0.40, 0.20, 0.20, 0.15, 0.05)


@dataclass(frozen=True, slots=True)
class IndexedMiner:
    """What the index keeps of one miner; it is online while `now < lease_expires_at`."""

    miner_id: str
    addr: str
    proto: str
    gpu_vram_gb: float
    ram_gb: float
    accel: str
    region: str | None
    tags: tuple[str, ...]
    capabilities: tuple[str, ...]
    price: Decimal
    max_parallel: int
    queue_len: int
    busy: bool
    lease_expires_at: float
    eta_ms: float | None
    trust: float
    trust_samples: float
    sla_penalty: float = 1.0


@dataclass(frozen=True, slots=True)
class Requirements:
    """Hard requirements; None or an empty tuple means the constraint is absent. `task` is informational."""

    min_vram_gb: float | None = None
    min_ram_gb: float | None = None
    accel: tuple[str, ...] | None = None
    tags_any: tuple[str, ...] | None = None
    capabilities_any: tuple[str, ...] | None = None
    task: str | None = None


@dataclass(frozen=True, slots=True)
class Hints:
    """Constraints from the request's hints; each applies only when given."""

    region: str | None = None
    max_price: Decimal | None = None
    deadline_ms: float | None = None


@dataclass(frozen=True, slots=True)
class MatchQuery:
    """One match request; `explain_miner` asks why that miner was or was not returned."""

    job_id: str
    tenant_id: str | None
    requirements: Requirements
    hints: Hints
    top_k: int = 1
    explain_miner: str | None = None

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")


@dataclass(frozen=True, slots=True)
class ExplorationPolicy:
    """How many top_k slots go to little-known miners, so new miners can earn a reputation."""

    share: float = 0.1
    max_samples: float = 5.0
    min_cap: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"exploration share must be within [0, 1], got {self.share!r}")
        if not self.max_samples >= 0.0:
            raise ValueError(f"exploration max_samples must be >= 0, got {self.max_samples!r}")
        if not 0.0 <= self.min_cap <= 1.0:
            raise ValueError(f"exploration min_cap must be within [0, 1], got {self.min_cap!r}")


DEFAULT_EXPLORATION: Final = ExplorationPolicy()


@dataclass(frozen=True, slots=True)
class ScoreTerms:
    """The five score terms of one miner, each in [0, 1]."""

    cap: float
    price: float
    latency: float
    trust: float
    load: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """A miner offered for the job, with its score and how it was reached."""

    miner_id: str
    addr: str
    proto: str
    score: float
    eta_ms: float | None
    price: Decimal
    matched_capabilities: tuple[str, ...]
    explain: str
    terms: ScoreTerms
    sla_penalty: float
    exploration: bool


@dataclass(frozen=True, slots=True)
class MinerExplanation:
    """Why one miner was or was not returned; `rank` is its place among all eligible miners."""

    miner_id: str
    registered: bool
    eligible: bool
    failed: tuple[str, ...]
    score: float | None
    rank: int | None
    returned: bool
    explain: str


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The candidates and the counts behind them; `rejections` holds every reason, zero when none."""

    job_id: str
    candidates: tuple[Candidate, ...]
    explain: str
    considered: int
    eligible: int
    rejections: dict[str, int]
    miner_explanation: MinerExplanation | None


def terms_explain(terms: ScoreTerms, sla_penalty: float, *, exploration: bool) -> str:
    """The candidate explain string: five terms with two decimals, then any penalty and exploration flag."""
    text = (
        f"cap={terms.cap:.2f} • price={terms.price:.2f} • latency={terms.latency:.2f} • "
        f"trust={terms.trust:.2f} • load={terms.load:.2f}"
    )
    if sla_penalty < 1.0:
        text += f" • sla_penalty={sla_penalty:.2f}"
    if exploration:
        text += " • exploration=true"
    return text


def rejection_explain(considered: int, rejections: dict[str, int], returned: int) -> str:
    """The top-level explain string: considered, non-zero rejections in reason order, returned."""
    listed = " ".join(
        f"{reason}={rejections[reason]}" for reason in REJECTION_REASONS if rejections.get(reason)
    )
    return f"considered={considered}{_SEP}rejected: {listed or 'none'}{_SEP}returned={returned}"


def failed_constraints(miner: IndexedMiner, query: MatchQuery, now: float) -> tuple[str, ...]:
    """Every constraint the miner fails, in REJECTION_REASONS order: the scalar twin of the filters."""
    return tuple(reason for reason, _detail in _failures(miner, query, now))


def _failures(miner: IndexedMiner, query: MatchQuery, now: float) -> list[tuple[str, str]]:
    req, hints = query.requirements, query.hints
    out: list[tuple[str, str]] = []
    if not now < miner.lease_expires_at:
        out.append(("offline", "offline (lease lapsed or logged out)"))
    if miner.busy or miner.queue_len >= miner.max_parallel:
        why = "busy" if miner.busy else f"queue {miner.queue_len} of {miner.max_parallel}"
        out.append(("full", f"full ({why})"))
    if req.min_vram_gb is not None and miner.gpu_vram_gb < req.min_vram_gb:
        out.append(("vram", f"vram ({miner.gpu_vram_gb:g} GB < {req.min_vram_gb:g} GB)"))
    if req.min_ram_gb is not None and miner.ram_gb < req.min_ram_gb:
        out.append(("ram", f"ram ({miner.ram_gb:g} GB < {req.min_ram_gb:g} GB)"))
    if req.accel and miner.accel not in req.accel:
        out.append(("accel", f"accel ({miner.accel} not in {', '.join(req.accel)})"))
    if req.tags_any and not set(req.tags_any).intersection(miner.tags):
        out.append(("tags", f"tags (none of {', '.join(req.tags_any)})"))
    if req.capabilities_any and not set(req.capabilities_any).intersection(miner.capabilities):
        out.append(("capabilities", f"capabilities (none of {', '.join(req.capabilities_any)})"))
    if hints.region is not None and miner.region != hints.region:
        out.append(("region", f"region ({miner.region or 'none'} ≠ {hints.region})"))
    # Same float64 comparison as the vectorised filter, so the explanation agrees with the counts.
    if hints.max_price is not None and float(miner.price) > float(hints.max_price):
        out.append(("price", f"price ({miner.price} > {hints.max_price})"))
    eta = miner.eta_ms
    if hints.deadline_ms is not None and eta is not None and eta > hints.deadline_ms:
        out.append(("deadline", f"deadline (eta {eta:g} ms > {hints.deadline_ms:g} ms)"))
    return out


def _resized(array: npt.NDArray[_Scalar], capacity: int, fill: object) -> npt.NDArray[_Scalar]:
    grown: npt.NDArray[_Scalar] = np.full(capacity, fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def _clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_price(price: Decimal) -> None:
    if not price.is_finite() or price < 0:
        raise ValueError(f"price must be a finite decimal >= 0, got {price}")


class _TokenBits:
    """Which rows carry which string tokens, as bits in uint64 words: one column per 64 distinct tokens.

    Matches ask for the same few token sets over and over (the popular models) while miners rarely change
    their tags, so each set's result is cached until some row's tokens actually change. Tokens are never
    forgotten: the vocabulary is whatever registered miners ever declared.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._bits: dict[str, int] = {}
        self._words: list[npt.NDArray[np.uint64]] = []
        self._version = 0
        self._cache: dict[frozenset[str], tuple[int, int, BoolArray, HitArray]] = {}

    def grow(self, capacity: int) -> None:
        self._capacity = capacity
        self._words = [_resized(word, capacity, 0) for word in self._words]

    def set_row(self, row: int, tokens: Iterable[str]) -> None:
        wanted: dict[int, int] = {}
        for token in tokens:
            bit = self._bits.get(token)
            if bit is None:
                bit = self._bits[token] = len(self._bits)
                if bit >> 6 == len(self._words):
                    self._words.append(np.zeros(self._capacity, dtype=np.uint64))
            wanted[bit >> 6] = wanted.get(bit >> 6, 0) | (1 << (bit & 63))
        for w, word in enumerate(self._words):
            value = wanted.get(w, 0)
            if int(word[row]) != value:
                word[row] = value
                self._version += 1

    def hits(self, tokens: Sequence[str], n: int) -> tuple[BoolArray, HitArray]:
        """Per row: whether it has any of the tokens, and how many of them (read-only, possibly cached)."""
        key = frozenset(tokens)
        cached = self._cache.pop(key, None)
        if cached is None or cached[0] != self._version or cached[1] != n:
            groups: dict[int, int] = {}
            for token in key:
                bit = self._bits.get(token)
                # A token no miner ever declared has no bit and matches nobody.
                if bit is not None:
                    groups[bit >> 6] = groups.get(bit >> 6, 0) | (1 << (bit & 63))
            counts: HitArray = np.zeros(n, dtype=np.uint8)
            for w, mask in groups.items():
                word_hits = np.bitwise_count(self._words[w][:n] & np.uint64(mask))
                counts = word_hits if len(groups) == 1 else np.add(counts, word_hits, dtype=np.uint16)
            present = counts != 0
            present.flags.writeable = False
            counts.flags.writeable = False
            cached = (self._version, n, present, counts)
        self._cache[key] = cached
        if len(self._cache) > _TOKEN_CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        return cached[2], cached[3]


class _EtaRanks:
    """Live rows ordered by eta, so a percentile rank within any subset costs a prefix sum instead of a sort.

    Sorting 100k etas per match would take milliseconds. The order is refreshed lazily instead: rows whose eta
    changed since the last refresh are "dirty" and are ranked on the side until there are enough of them to be
    worth merging back in, which costs a pass over the order rather than a full sort.
    """

    def __init__(self, capacity: int) -> None:
        self._order: IntArray = np.empty(0, dtype=np.intp)
        # Each ordered row's eta as of the last refresh; unknown etas are NaN and sort last.
        self._values: FloatArray = np.empty(0, dtype=np.float64)
        self._dirty: BoolArray = np.zeros(capacity, dtype=np.bool_)
        self._dirty_rows: IntArray = np.zeros(capacity, dtype=np.intp)
        self._n_dirty = 0
        # Dirty rows whose current eta is still to be placed among `_values`: done in one batch per match.
        self._unplaced: list[int] = []
        # Per row: its place in the order (-1 when it has none), and the first place holding its eta, which is
        # how many ordered etas are lower. Both are stale for dirty rows but always within bounds.
        self._place: IntArray = np.full(capacity, -1, dtype=np.intp)
        self._start: IntArray = np.zeros(capacity, dtype=np.intp)
        # Per dirty row: how many ordered etas are <= and < its current eta.
        self._above: IntArray = np.zeros(capacity, dtype=np.intp)
        self._below: IntArray = np.zeros(capacity, dtype=np.intp)

    def grow(self, capacity: int) -> None:
        self._dirty = _resized(self._dirty, capacity, False)
        self._dirty_rows = _resized(self._dirty_rows, capacity, 0)
        self._place = _resized(self._place, capacity, -1)
        self._start = _resized(self._start, capacity, 0)
        self._above = _resized(self._above, capacity, 0)
        self._below = _resized(self._below, capacity, 0)

    def touch(self, row: int) -> None:
        if not self._dirty[row]:
            self._dirty[row] = True
            self._dirty_rows[self._n_dirty] = row
            self._n_dirty += 1
        self._unplaced.append(row)
        # Heartbeats without matches in between must not grow this without bound.
        if len(self._unplaced) > len(self._dirty):
            self._unplaced = self._dirty_rows[: self._n_dirty].tolist()

    def lower_counts(
        self, eta: FloatArray, live: BoolArray, eligible: BoolArray, rows: IntArray | None, picked: FloatArray
    ) -> npt.NDArray[np.int32] | IntArray:
        """How many eligible rows have a strictly lower known eta than each scored row.

        Scored rows are `rows` (= flatnonzero(eligible)), or every row when `rows` is None; `picked` holds
        their etas. The count is junk where a row's own eta is unknown, or where it is not eligible.
        """
        n = len(eligible)
        # A small subset is cheaper to sort directly than to walk the whole order.
        if rows is not None and (len(rows) * 40 <= n or len(rows) <= _NARROW_MIN):
            return np.searchsorted(np.sort(picked), picked, side="left")
        if self._n_dirty > max(_NARROW_MIN, n >> 6):
            self._refresh(eta, live)
        if self._unplaced:
            unplaced = np.array(self._unplaced, dtype=np.intp)
            self._unplaced.clear()
            self._above[unplaced] = np.searchsorted(self._values, eta[unplaced], side="right")
            self._below[unplaced] = np.searchsorted(self._values, eta[unplaced], side="left")
        size = len(self._order)
        # One slot per place in the order, plus a spare one that soaks up place -1.
        counted = np.zeros(size + 1, dtype=np.int32)
        if rows is None:
            counted[:size] = eligible[self._order]
        else:
            counted[self._place[rows]] = 1
        dirty = self._dirty_rows[: self._n_dirty]
        dirty = dirty[eligible[dirty]]
        base = 0
        if len(dirty):
            # Their places hold stale etas: uncount those and count the current etas aside.
            counted[self._place[dirty]] = 0
            dirty_eta = eta[dirty]
            known = dirty_eta == dirty_eta
            dirty, dirty_eta = dirty[known], dirty_eta[known]
            above = self._above[dirty]
            # A dirty eta is counted just before the first ordered eta above it, so the prefix sum at a clean
            # row's start covers exactly the dirty etas below its own; one below every ordered eta lands in
            # the spare slot and in `base` instead.
            np.add.at(counted, above - 1, 1)
            base = int(np.count_nonzero(above == 0))
        prefix = np.empty(size + 1, dtype=np.int32)
        prefix[0] = base
        np.cumsum(counted[:size], dtype=np.int32, out=prefix[1:])
        if base:
            prefix[1:] += base
        lower = np.take(prefix, self._start[:n] if rows is None else self._start[rows])
        if len(dirty):
            below = self._below[dirty]
            clean_below = prefix[below] - np.searchsorted(np.sort(above), below, side="right")
            dirty_below = np.searchsorted(np.sort(dirty_eta), dirty_eta, side="left")
            lower[dirty if rows is None else np.searchsorted(rows, dirty)] = clean_below + dirty_below
        return lower

    def _refresh(self, eta: FloatArray, live: BoolArray) -> None:
        dirty = self._dirty_rows[: self._n_dirty]
        keep = ~self._dirty[self._order]
        order, values = self._order[keep], self._values[keep]
        back = dirty[live[dirty]]
        if len(back):
            back_eta = eta[back]
            by_eta = np.argsort(back_eta, kind="stable")
            back, back_eta = back[by_eta], back_eta[by_eta]
            at = np.searchsorted(values, back_eta, side="right")
            order, values = np.insert(order, at, back), np.insert(values, at, back_eta)
        gone = dirty[~live[dirty]]
        self._place[gone] = -1
        self._start[gone] = 0
        self._dirty[dirty] = False
        self._n_dirty = 0
        self._unplaced.clear()
        self._order, self._values = order, values
        if len(values):
            first = np.empty(len(values), dtype=np.bool_)
            first[0] = True
            np.not_equal(values[1:], values[:-1], out=first[1:])
            places = np.arange(len(values))
            # Each place's start is the first place of its run of equal etas (np.maximum.accumulate would do,
            # but runs ~10x slower than numbering the runs and looking their first places up).
            start = places
            if not first.all():
                run = np.cumsum(first, dtype=np.int32)
                run -= 1
                start = np.take(np.flatnonzero(first), run)
            self._place[order] = places
            self._start[order] = start


@dataclass(frozen=True, slots=True)
class _Filtered:
    eligible: BoolArray
    count: int
    rejections: dict[str, int]
    cap_hits: HitArray | None
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Scored:
    """Scores of the eligible miners, plus what it takes to restate any one miner's terms.

    A "position" indexes the arrays. Sparse (`rows` set): they hold the eligible rows only, in row order.
    Dense (`rows` None): they span every row, a position is a row, and ineligible rows hold junk scores that
    only `eligible` tells apart.
    """

    rows: IntArray | None
    eligible: BoolArray
    count: int
    score: FloatArray
    price: FloatArray
    cap_hits: HitArray | None  # None: every eligible miner has every capability asked for
    n_caps: int
    max_price: float | None
    cheapest: float
    dearest: float
    known: BoolArray | None  # None: no eligible miner has a known eta
    lower: npt.NDArray[np.int32] | IntArray | None
    n_known: int

    def rows_of(self, positions: IntArray) -> IntArray:
        return positions if self.rows is None else self.rows[positions]

    def position_of(self, row: int) -> int:
        return row if self.rows is None else int(np.searchsorted(self.rows, row))

    def pick(self, column: FloatArray) -> FloatArray:
        return column[: len(self.eligible)] if self.rows is None else column.take(self.rows)

    def cap(self, positions: IntArray) -> FloatArray:
        if self.cap_hits is None:
            return np.ones(len(positions), dtype=np.float64)
        return np.multiply(self.cap_hits[positions], 1.0 / self.n_caps, dtype=np.float64)

    def price_term(self, price: float) -> float:
        if self.max_price is not None:
            return 1.0 - price / self.max_price if self.max_price > 0 else 1.0
        if self.dearest > self.cheapest:
            return (self.dearest - price) / (self.dearest - self.cheapest)
        return 1.0

    def latency(self, position: int) -> float:
        if self.known is None or self.lower is None or not self.known[position]:
            return 0.5
        return 1.0 - float(self.lower[position]) / self.n_known


class MinerIndex:
    """Every registered miner as numpy columns, one stable row each, so a match is a few vector passes.

    Used from one asyncio thread, so it takes no locks. Prices are Decimal in and out but float64 inside; for
    decimals of at most 15 significant digits, float64 conversion is exact enough that comparing the floats
    orders them exactly as the decimals would (conversion is monotonic and such decimals stay distinct).
    """

    def __init__(self) -> None:
        capacity = _INITIAL_CAPACITY
        self._capacity = capacity
        self._size = 0
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        self._records: list[IndexedMiner | None] = []
        self._free: list[int] = []
        self._accel_codes: dict[str, int] = {}
        self._region_codes: dict[str, int] = {}
        self._tags = _TokenBits(capacity)
        self._caps = _TokenBits(capacity)
        self._eta_ranks = _EtaRanks(capacity)
        self._id_rank: npt.NDArray[np.int64] | None = None
        self._penalised: set[int] = set()
        self._live = np.zeros(capacity, dtype=np.bool_)
        self._vram = np.zeros(capacity, dtype=np.float64)
        self._ram = np.zeros(capacity, dtype=np.float64)
        self._accel = np.full(capacity, -1, dtype=np.int32)
        self._region = np.full(capacity, -1, dtype=np.int32)
        self._has_slot = np.zeros(capacity, dtype=np.bool_)
        # Free rows keep an expired lease, so the online test alone keeps them out of every match.
        self._lease = np.full(capacity, -np.inf, dtype=np.float64)
        self._price = np.zeros(capacity, dtype=np.float64)
        self._eta = np.full(capacity, np.nan, dtype=np.float64)
        self._trust = np.zeros(capacity, dtype=np.float64)
        self._load = np.zeros(capacity, dtype=np.float64)
        self._penalty = np.ones(capacity, dtype=np.float64)
        self._samples = np.zeros(capacity, dtype=np.float64)
        # trust and load weighted for the last weights used; they rarely change, and this saves passes.
        self._static = np.zeros(capacity, dtype=np.float64)
        self._static_weights: tuple[float, float] | None = None

    # ---- maintenance -------------------------------------------------------------------------------------

    def upsert(self, miner: IndexedMiner) -> None:
        """Add the miner or replace what the index holds of it, keeping its row."""
        for name in ("gpu_vram_gb", "ram_gb", "trust", "trust_samples", "sla_penalty"):
            _check_finite(name, getattr(miner, name))
        _check_price(miner.price)
        row = self._rows.get(miner.miner_id)
        if row is None:
            row = self._allocate_row()
            self._rows[miner.miner_id] = row
            self._ids[row] = miner.miner_id
            self._live[row] = True
            self._id_rank = None
        self._records[row] = miner
        self._vram[row] = miner.gpu_vram_gb
        self._ram[row] = miner.ram_gb
        self._accel[row] = self._accel_codes.setdefault(miner.accel, len(self._accel_codes))
        region = miner.region
        self._region[row] = (
            -1 if region is None else self._region_codes.setdefault(region, len(self._region_codes))
        )
        self._tags.set_row(row, miner.tags)
        self._caps.set_row(row, miner.capabilities)
        self._lease[row] = miner.lease_expires_at
        self._price[row] = float(miner.price)
        self._set_eta(row, miner.eta_ms)
        self._set_slots(row, miner)
        self._trust[row] = _clamp01(miner.trust)
        self._samples[row] = miner.trust_samples
        self._set_penalty(row, miner.sla_penalty)
        self._restate_static(row)

    def update_status(
        self,
        miner_id: str,
        *,
        queue_len: int | None = None,
        busy: bool | None = None,
        lease_expires_at: float | None = None,
        eta_ms: float | None = None,
        price: Decimal | None = None,
    ) -> bool:
        """Apply a heartbeat or status update; None leaves a field as it is. False if the id is unknown."""
        if price is not None:
            _check_price(price)
        row = self._rows.get(miner_id)
        if row is None:
            return False
        miner = self._record(row)
        miner = replace(
            miner,
            queue_len=miner.queue_len if queue_len is None else queue_len,
            busy=miner.busy if busy is None else busy,
            lease_expires_at=miner.lease_expires_at if lease_expires_at is None else lease_expires_at,
            eta_ms=miner.eta_ms if eta_ms is None else eta_ms,
            price=miner.price if price is None else price,
        )
        self._records[row] = miner
        if queue_len is not None or busy is not None:
            self._set_slots(row, miner)
            self._restate_static(row)
        if lease_expires_at is not None:
            self._lease[row] = lease_expires_at
        if eta_ms is not None:
            self._set_eta(row, eta_ms)
        if price is not None:
            self._price[row] = float(price)
        return True

    def update_trust(self, miner_id: str, trust: float, samples: float) -> bool:
        """Record a new trust score and the evidence behind it; False if the id is unknown."""
        _check_finite("trust", trust)
        _check_finite("trust_samples", samples)
        row = self._rows.get(miner_id)
        if row is None:
            return False
        self._records[row] = replace(self._record(row), trust=trust, trust_samples=samples)
        self._trust[row] = _clamp01(trust)
        self._samples[row] = samples
        self._restate_static(row)
        return True

    def set_penalty(self, miner_id: str, factor: float) -> bool:
        """Set the factor an open SLA violation multiplies the score by (1 = none); False if unknown."""
        _check_finite("sla_penalty", factor)
        row = self._rows.get(miner_id)
        if row is None:
            return False
        self._records[row] = replace(self._record(row), sla_penalty=factor)
        self._set_penalty(row, factor)
        return True

    def remove(self, miner_id: str) -> bool:
        """Forget the miner; a later upsert reuses its row. False if the id is unknown."""
        row = self._rows.pop(miner_id, None)
        if row is None:
            return False
        self._records[row] = None
        self._ids[row] = ""
        self._live[row] = False
        self._id_rank = None
        self._lease[row] = -np.inf
        self._has_slot[row] = False
        self._set_eta(row, None)
        self._set_penalty(row, 1.0)
        self._tags.set_row(row, ())
        self._caps.set_row(row, ())
        self._free.append(row)
        return True

    def get(self, miner_id: str) -> IndexedMiner | None:
        row = self._rows.get(miner_id)
        return None if row is None else self._records[row]

    def miner_ids(self) -> list[str]:
        return sorted(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, miner_id: object) -> bool:
        return isinstance(miner_id, str) and miner_id in self._rows

    def online_count(self, now: float) -> int:
        return int(np.count_nonzero(self._lease[: self._size] > now))

    def avg_eta_ms(self, now: float) -> float | None:
        """Mean eta over online miners whose eta is known; None when there is none."""
        eta = self._eta[: self._size]
        known = (self._lease[: self._size] > now) & ~np.isnan(eta)
        if not known.any():
            return None
        return float(eta[known].mean())

    def _record(self, row: int) -> IndexedMiner:
        miner = self._records[row]
        assert miner is not None, "a live row always has its record"
        return miner

    def _allocate_row(self) -> int:
        if self._free:
            return self._free.pop()
        if self._size == self._capacity:
            self._grow(self._capacity * 2)
        row = self._size
        self._size += 1
        self._ids.append("")
        self._records.append(None)
        return row

    def _grow(self, capacity: int) -> None:
        self._capacity = capacity
        self._live = _resized(self._live, capacity, False)
        self._vram = _resized(self._vram, capacity, 0.0)
        self._ram = _resized(self._ram, capacity, 0.0)
        self._accel = _resized(self._accel, capacity, -1)
        self._region = _resized(self._region, capacity, -1)
        self._has_slot = _resized(self._has_slot, capacity, False)
        self._lease = _resized(self._lease, capacity, -np.inf)
        self._price = _resized(self._price, capacity, 0.0)
        self._eta = _resized(self._eta, capacity, np.nan)
        self._trust = _resized(self._trust, capacity, 0.0)
        self._load = _resized(self._load, capacity, 0.0)
        self._penalty = _resized(self._penalty, capacity, 1.0)
        self._samples = _resized(self._samples, capacity, 0.0)
        self._static = _resized(self._static, capacity, 0.0)
        self._tags.grow(capacity)
        self._caps.grow(capacity)
        self._eta_ranks.grow(capacity)

    def _set_slots(self, row: int, miner: IndexedMiner) -> None:
        self._has_slot[row] = not miner.busy and miner.queue_len < miner.max_parallel
        free = max(0, miner.max_parallel - miner.queue_len)
        self._load[row] = _clamp01(free / miner.max_parallel) if miner.max_parallel > 0 else 0.0

    def _set_eta(self, row: int, eta_ms: float | None) -> None:
        new = np.nan if eta_ms is None else float(eta_ms)
        old = float(self._eta[row])
        if new != old and not (math.isnan(new) and math.isnan(old)):
            self._eta[row] = new
            self._eta_ranks.touch(row)

    def _set_penalty(self, row: int, factor: float) -> None:
        self._penalty[row] = effective = _clamp01(factor)
        if effective < 1.0:
            self._penalised.add(row)
        else:
            self._penalised.discard(row)

    def _restate_static(self, row: int) -> None:
        if self._static_weights is not None:
            w_trust, w_load = self._static_weights
            self._static[row] = w_trust * self._trust[row] + w_load * self._load[row]

    def _static_for(self, weights: Weights) -> FloatArray:
        key = (weights.trust, weights.load)
        if self._static_weights != key:
            self._static_weights = key
            self._static = weights.trust * self._trust + weights.load * self._load
        return self._static

    # ---- matching ----------------------------------------------------------------------------------------

    def match(
        self,
        query: MatchQuery,
        now: float,
        weights: Weights,
        exploration: ExplorationPolicy = DEFAULT_EXPLORATION,
    ) -> MatchResult:
        """Filter, score and rank every miner for the query, as POST /v1/match describes in API.md."""
        filtered = self._filter(query, now)
        chosen: list[tuple[int, bool]] = []
        greedy: list[int] = []
        scored: _Scored | None = None
        if filtered.count:
            scored = self._score(filtered, query.hints, weights)
            greedy = self._top(scored, None, min(query.top_k, filtered.count))
            chosen = self._explore(scored, greedy, query.top_k, exploration)
        candidates = self._candidates(scored, chosen, filtered.capabilities)
        explanation = None
        if query.explain_miner is not None:
            explanation = self._explain(query, now, scored, greedy, chosen)
        return MatchResult(
            job_id=query.job_id,
            candidates=candidates,
            explain=rejection_explain(len(self), filtered.rejections, len(candidates)),
            considered=len(self),
            eligible=filtered.count,
            rejections=filtered.rejections,
            miner_explanation=explanation,
        )

    def _filter(self, query: MatchQuery, now: float) -> _Filtered:
        n = self._size
        req, hints = query.requirements, query.hints
        # One row per constraint present, each "passes it"; filled in place, then and-ed with `online` and
        # counted in a few calls, since per-call overhead rivals the work itself at 10k miners.
        passes = np.empty((len(REJECTION_REASONS), n), dtype=np.bool_)
        checked: list[str] = []

        def check(reason: str) -> BoolArray:
            checked.append(reason)
            row: BoolArray = passes[len(checked) - 1]
            return row

        np.copyto(check("full"), self._has_slot[:n])
        # Stored vram, ram and prices are finite (upsert checks), so `>=` is exactly "not below".
        if req.min_vram_gb is not None:
            np.greater_equal(self._vram[:n], req.min_vram_gb, out=check("vram"))
        if req.min_ram_gb is not None:
            np.greater_equal(self._ram[:n], req.min_ram_gb, out=check("ram"))
        if req.accel:
            out = check("accel")
            out[:] = False
            for code in {self._accel_codes[a] for a in req.accel if a in self._accel_codes}:
                out |= self._accel[:n] == code
        if req.tags_any:
            np.copyto(check("tags"), self._tags.hits(req.tags_any, n)[0])
        capabilities = tuple(dict.fromkeys(req.capabilities_any or ()))
        cap_hits = None
        if capabilities:
            has_any, counts = self._caps.hits(capabilities, n)
            np.copyto(check("capabilities"), has_any)
            # With one capability asked for, every eligible miner has all of it.
            cap_hits = counts if len(capabilities) > 1 else None
        if hints.region is not None:
            out = check("region")
            region = self._region_codes.get(hints.region)
            if region is None:
                out[:] = False
            else:
                np.equal(self._region[:n], region, out=out)
        if hints.max_price is not None:
            np.less_equal(self._price[:n], float(hints.max_price), out=check("price"))
        if hints.deadline_ms is not None:
            # An unknown eta is NaN and NaN > deadline is False: unknown etas pass, as the contract says.
            out = check("deadline")
            np.greater(self._eta[:n], hints.deadline_ms, out=out)
            np.logical_not(out, out=out)
        online = self._lease[:n] > now
        n_online = int(np.count_nonzero(online))
        rejections = dict.fromkeys(REJECTION_REASONS, 0)
        rejections["offline"] = len(self) - n_online
        block = passes[: len(checked)]
        np.logical_and(block, online, out=block)
        for reason, passed in zip(checked, block, strict=True):
            rejections[reason] = n_online - int(np.count_nonzero(passed))
        eligible = np.logical_and.reduce(block, axis=0)
        count = int(np.count_nonzero(eligible))
        return _Filtered(eligible, count, rejections, cap_hits, capabilities)

    def _score(self, filtered: _Filtered, hints: Hints, weights: Weights) -> _Scored:
        """Every eligible miner's score, as few full passes as possible.

        Each pass over 100k rows costs ~15 µs, so the weighted sum is regrouped into constants plus a handful
        of products; the per-term values of returned miners are restated afterwards from the same inputs.
        """
        eligible, m = filtered.eligible, filtered.count
        n = len(eligible)
        # With most rows eligible, full-length passes over contiguous columns beat gathering each column.
        rows = None if m * 5 >= n * 2 else np.flatnonzero(eligible)

        def pick(column: FloatArray) -> FloatArray:
            return column[:n] if rows is None else column.take(rows)

        price = pick(self._price)
        constant = 0.0
        max_price = None if hints.max_price is None else float(hints.max_price)
        cheapest = dearest = 0.0
        if max_price is None:
            if rows is not None:
                cheapest, dearest = float(price.min()), float(price.max())
            else:
                # Masked reductions are ~10x slower than plain ones; pushing ineligible prices out of range
                # arithmetically keeps them out of a plain min and max.
                far = ~eligible * _FAR
                cheapest, dearest = float((price + far).min()), float((price - far).max())
        if max_price is not None and max_price > 0:
            score = price * (-weights.price / max_price)
            constant += weights.price
        elif max_price is None and dearest > cheapest:
            score = price * (-weights.price / (dearest - cheapest))
            constant += weights.price * dearest / (dearest - cheapest)
        else:
            score = np.zeros(len(price), dtype=np.float64)
            constant += weights.price
        score += pick(self._static_for(weights))
        cap_hits = None
        if filtered.cap_hits is None:
            constant += weights.cap
        else:
            cap_hits = filtered.cap_hits[:n] if rows is None else filtered.cap_hits.take(rows)
            score += np.multiply(cap_hits, weights.cap / len(filtered.capabilities), dtype=np.float64)
        eta = pick(self._eta)
        known = eta == eta  # NaN, an unknown eta, is the only value unequal to itself
        n_known = int(np.count_nonzero(known if rows is not None else known & eligible))
        constant += weights.latency * 0.5
        lower = None
        if n_known:
            lower = self._eta_ranks.lower_counts(self._eta, self._live, eligible, rows, eta)
            # latency = 1 - lower/n_known where the eta is known, 0.5 (folded into the constant) where not.
            part = np.multiply(lower, -weights.latency / n_known, dtype=np.float64)
            part += weights.latency * 0.5
            part *= known
            score += part
        score += constant
        if self._penalised:
            score *= pick(self._penalty)
        # Regrouping can leave a score an ulp outside [0, 1], and weights may sum to 1 + 1e-6.
        np.clip(score, 0.0, 1.0, out=score)
        return _Scored(
            rows=rows,
            eligible=eligible,
            count=m,
            score=score,
            price=price,
            cap_hits=cap_hits,
            n_caps=len(filtered.capabilities),
            max_price=max_price,
            cheapest=cheapest,
            dearest=dearest,
            known=known if n_known else None,
            lower=lower,
            n_known=n_known,
        )

    def _top(self, scored: _Scored, positions: IntArray | None, k: int) -> list[int]:
        """The best k eligible `positions` (None: all), by rounded score desc, price asc, miner_id asc."""
        dense = scored.rows is None
        if positions is None:
            score = scored.score
            if dense and len(score) <= _NARROW_MIN:
                positions = np.flatnonzero(scored.eligible)
                score = score[positions]
        else:
            score = scored.score[positions]
        if k <= 0 or not len(score):
            return []
        # Dense and unnarrowed, `score` still spans ineligible rows, which every step below must skip.
        masked = positions is None and dense
        if len(score) > _NARROW_MIN and k < len(score):
            stride = max(1, len(score) // _SAMPLE_SIZE)
            sample = score[::stride]
            if masked:
                sample = sample[scored.eligible[::stride]]
            # The sample is a subset, so its k-th best score is a lower bound of the whole set's k-th best.
            if stride > 1 and len(sample) >= k:
                floor = np.partition(sample, len(sample) - k)[len(sample) - k]
                over = score >= floor - _SCORE_SLACK
                if masked:
                    over &= scored.eligible
                keep = np.flatnonzero(over)
                positions, score = (keep if positions is None else positions[keep]), score[keep]
                masked = False
            if masked:
                positions = np.flatnonzero(scored.eligible)
                score = score[positions]
                masked = False
            if len(score) > k:
                kth = np.partition(score, len(score) - k)[len(score) - k]
                keep = np.flatnonzero(score >= kth - _SCORE_SLACK)
                positions, score = (keep if positions is None else positions[keep]), score[keep]
        if positions is None:
            positions = np.arange(len(score))
        rounded = np.round(score, 6)
        price = scored.price[positions]
        if len(positions) > k:
            picked = self._pick_k(scored, positions, rounded, price, k)
            positions, rounded, price = positions[picked], rounded[picked], price[picked]
        ids, rows = self._ids, scored.rows_of(positions).tolist()
        keys = zip(
            (-rounded).tolist(), price.tolist(), (ids[row] for row in rows), positions.tolist(), strict=False
        )
        return [key[3] for key in sorted(keys)]

    def _pick_k(
        self, scored: _Scored, positions: IntArray, rounded: FloatArray, price: FloatArray, k: int
    ) -> IntArray:
        """Indices into `positions` of the best k, unordered; a tie at the cut goes by price, then id."""
        kth = np.partition(rounded, len(rounded) - k)[len(rounded) - k]
        above = np.flatnonzero(rounded > kth)
        tied = np.flatnonzero(rounded == kth)
        need = k - len(above)
        if len(tied) == need:
            return np.concatenate((above, tied))
        tied_price = price[tied]
        kth_price = np.partition(tied_price, need - 1)[need - 1]
        cheaper = tied[tied_price < kth_price]
        level = tied[tied_price == kth_price]
        need -= len(cheaper)
        if len(level) > need:
            level = level[self._smallest_ids(scored.rows_of(positions[level]), need)]
        return np.concatenate((above, cheaper, level))

    def _smallest_ids(self, rows: IntArray, need: int) -> IntArray:
        """Indices into `rows` of the `need` rows with the smallest miner ids."""
        if len(rows) <= _SMALL_TIE_GROUP:
            ids = self._ids
            ordered = sorted(range(len(rows)), key=lambda i: ids[int(rows[i])])
            return np.array(ordered[:need], dtype=np.intp)
        # A large tie (a fleet of identical miners) would make a Python sort per match the bottleneck, so rank
        # all ids once and reuse the ranks until a miner joins or leaves.
        if self._id_rank is None:
            rank = np.zeros(self._size, dtype=np.int64)
            for place, miner_id in enumerate(sorted(self._rows)):
                rank[self._rows[miner_id]] = place
            self._id_rank = rank
        return np.argpartition(self._id_rank[rows], need - 1)[:need]

    def _explore(
        self, scored: _Scored, greedy: list[int], top_k: int, policy: ExplorationPolicy
    ) -> list[tuple[int, bool]]:
        """Give the lowest greedy slots not held by little-known miners to the best little-known left out."""
        n_explore = math.floor(top_k * policy.share + _FLOOR_EPSILON)
        plain = [(pos, False) for pos in greedy]
        if n_explore <= 0 or len(greedy) >= scored.count:
            return plain
        little = scored.pick(self._samples) < policy.max_samples
        if scored.cap_hits is not None:
            little &= scored.cap_hits >= policy.min_cap * scored.n_caps - 1e-9
        if scored.rows is None:
            little &= scored.eligible
        in_top = sum(1 for pos in greedy if little[pos])
        if in_top >= n_explore:
            return plain
        little[greedy] = False
        newcomers = self._top(scored, np.flatnonzero(little), n_explore - in_top)
        if not newcomers:
            return plain
        dropped = set([pos for pos in reversed(greedy) if not little[pos]][: len(newcomers)])
        merged = [(pos, False) for pos in greedy if pos not in dropped]
        merged += [(pos, True) for pos in newcomers[: len(dropped)]]
        final = self._top(scored, np.array([pos for pos, _ in merged], dtype=np.intp), len(merged))
        exploring = dict(merged)
        return [(pos, exploring[pos]) for pos in final]

    def _terms(self, scored: _Scored, positions: IntArray) -> list[tuple[ScoreTerms, float]]:
        """Restate the terms and the penalty of a few positions from the columns the score was built from."""
        rows = scored.rows_of(positions)
        columns = zip(
            scored.cap(positions).tolist(),
            scored.price[positions].tolist(),
            positions.tolist(),
            self._trust[rows].tolist(),
            self._load[rows].tolist(),
            self._penalty[rows].tolist(),
            strict=True,
        )
        return [
            (ScoreTerms(cap, scored.price_term(price), scored.latency(pos), trust, load), penalty)
            for cap, price, pos, trust, load, penalty in columns
        ]

    def _candidates(
        self, scored: _Scored | None, chosen: list[tuple[int, bool]], capabilities: tuple[str, ...]
    ) -> tuple[Candidate, ...]:
        if scored is None or not chosen:
            return ()
        positions = np.array([pos for pos, _ in chosen], dtype=np.intp)
        columns = zip(
            scored.rows_of(positions).tolist(),
            np.round(scored.score[positions], 6).tolist(),
            self._terms(scored, positions),
            (exploring for _, exploring in chosen),
            strict=True,
        )
        out = []
        for row, score, (terms, penalty), exploring in columns:
            miner = self._record(row)
            have = miner.capabilities
            out.append(
                Candidate(
                    miner_id=miner.miner_id,
                    addr=miner.addr,
                    proto=miner.proto,
                    score=score,
                    eta_ms=miner.eta_ms,
                    price=miner.price,
                    matched_capabilities=tuple(c for c in capabilities if c in have),
                    explain=terms_explain(terms, penalty, exploration=exploring),
                    terms=terms,
                    sla_penalty=penalty,
                    exploration=exploring,
                )
            )
        return tuple(out)

    def _explain(
        self,
        query: MatchQuery,
        now: float,
        scored: _Scored | None,
        greedy: list[int],
        chosen: list[tuple[int, bool]],
    ) -> MinerExplanation:
        miner_id = query.explain_miner
        assert miner_id is not None
        row = self._rows.get(miner_id)
        if row is None:
            return MinerExplanation(
                miner_id, False, False, (), None, None, False, f"{miner_id} is not registered"
            )
        failures = _failures(self._record(row), query, now)
        if failures:
            text = f"{miner_id} is not eligible: " + ", ".join(detail for _reason, detail in failures)
            failed = tuple(reason for reason, _detail in failures)
            return MinerExplanation(miner_id, True, False, failed, None, None, False, text)
        assert scored is not None, "an eligible miner means something was scored"
        pos = scored.position_of(row)
        rounded = np.round(scored.score, 6)
        price = scored.price
        mine, my_price = rounded[pos], price[pos]
        same = rounded == mine
        before = (rounded > mine) | (same & (price < my_price))
        level = same & (price == my_price)
        if scored.rows is None:
            before &= scored.eligible
            level &= scored.eligible
        ids = self._ids
        rank = 1 + int(np.count_nonzero(before))
        rank += sum(1 for other in scored.rows_of(np.flatnonzero(level)).tolist() if ids[other] < miner_id)
        exploring = dict(chosen)
        returned = pos in exploring
        if returned:
            status = "returned for exploration" if exploring[pos] else "returned"
        elif pos in greedy:
            status = "not returned: its slot went to exploration"
        else:
            status = f"not returned (top_k={query.top_k})"
        [(terms, penalty)] = self._terms(scored, np.array([pos], dtype=np.intp))
        breakdown = terms_explain(terms, penalty, exploration=exploring.get(pos, False))
        text = (
            f"{miner_id} is eligible: ranked {rank} of {scored.count} with score {float(mine):.6f}, "
            f"{status}: {breakdown}"
        )
        return MinerExplanation(miner_id, True, True, (), float(mine), rank, returned, text)
