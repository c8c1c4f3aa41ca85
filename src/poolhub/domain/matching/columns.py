"""The index's storage: one numpy column per miner attribute, one stable row per miner."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from poolhub.domain.matching.arrays import BoolArray, FloatArray, resized
from poolhub.domain.matching.coded import CodedColumn
from poolhub.domain.matching.eta_ranks import EtaRanks
from poolhub.domain.matching.extremes import PriceExtremes
from poolhub.domain.matching.tokens import TokenRows
from poolhub.domain.matching.values import IndexedMiner, Weights

_INITIAL_CAPACITY: Final = 64
# From about 50k rows on, ranking only the contenders' etas beats ranking every eligible eta, whose cost
# grows with the rows while the contender search's ~100 µs of overhead does not.
CONTENDERS_FROM_ROWS: Final = 65_536


def clamp01(value: float) -> float:
    return min(1.0, max(0.0, value))


class MinerColumns:
    """Every registered miner as numpy columns, one stable row each, so a match is a few vector passes.

    Used from one asyncio thread, so it takes no locks. Prices are Decimal in and out but float64 inside; for
    decimals of at most 15 significant digits, float64 conversion is exact enough that comparing the floats
    orders them exactly as the decimals would (conversion is monotonic and such decimals stay distinct).
    """

    def __init__(self, *, contenders_from_rows: int = CONTENDERS_FROM_ROWS) -> None:
        """`contenders_from_rows`: the row count from which a match with most rows eligible ranks only the
        etas of the miners that could make its top-k (tests lower it to cover that path on small fleets)."""
        self._contenders_from_rows = contenders_from_rows
        capacity = _INITIAL_CAPACITY
        self._capacity = capacity
        self._size = 0
        self._rows: dict[str, int] = {}
        self._ids: list[str] = []
        self._records: list[IndexedMiner | None] = []
        self._free: list[int] = []
        self._tags = TokenRows()
        self._caps = TokenRows()
        self._eta_ranks = EtaRanks(capacity)
        self._price_extremes = PriceExtremes()
        self._id_rank: npt.NDArray[np.int64] | None = None
        self._penalised: set[int] = set()
        self._live = np.zeros(capacity, dtype=np.bool_)
        self._vram = np.zeros(capacity, dtype=np.float64)
        self._ram = np.zeros(capacity, dtype=np.float64)
        self._accel = CodedColumn(capacity)
        self._region = CodedColumn(capacity)
        self._has_slot = np.zeros(capacity, dtype=np.bool_)
        # Free rows keep an expired lease, so the online test alone keeps them out of every match.
        self._lease = np.full(capacity, -np.inf, dtype=np.float64)
        # Whether each lease ran past `_online_at`: exact for any time from then until `_online_until`, the
        # earliest lease it counts as online, so most matches need not compare every lease. Lease writes keep
        # it (and its count) current.
        self._online = np.zeros(capacity, dtype=np.bool_)
        self._n_online = 0
        self._online_at = math.inf
        self._online_until = -math.inf
        self._price = np.zeros(capacity, dtype=np.float64)
        self._eta = np.full(capacity, np.nan, dtype=np.float64)
        # 1.0 where the eta is known, else 0.0: masking with floats runs ~4x faster than with booleans.
        self._eta_known = np.zeros(capacity, dtype=np.float64)
        self._trust = np.zeros(capacity, dtype=np.float64)
        self._load = np.zeros(capacity, dtype=np.float64)
        self._penalty = np.ones(capacity, dtype=np.float64)
        self._samples = np.zeros(capacity, dtype=np.float64)
        # trust and load weighted for the last weights used; they rarely change, and this saves passes.
        self._static = np.zeros(capacity, dtype=np.float64)
        self._static_weights: tuple[float, float] | None = None
        # Scratch space each match computes its scores in, rather than two fresh arrays of up to 100k floats.
        self._score_scratch = np.empty(capacity, dtype=np.float64)
        self._part_scratch = np.empty(capacity, dtype=np.float64)

    def __len__(self) -> int:
        return len(self._rows)

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
        self._live = resized(self._live, capacity, False)
        self._vram = resized(self._vram, capacity, 0.0)
        self._ram = resized(self._ram, capacity, 0.0)
        self._accel.grow(capacity)
        self._region.grow(capacity)
        self._has_slot = resized(self._has_slot, capacity, False)
        self._lease = resized(self._lease, capacity, -np.inf)
        self._online = resized(self._online, capacity, False)
        self._price = resized(self._price, capacity, 0.0)
        self._eta = resized(self._eta, capacity, np.nan)
        self._eta_known = resized(self._eta_known, capacity, 0.0)
        self._trust = resized(self._trust, capacity, 0.0)
        self._load = resized(self._load, capacity, 0.0)
        self._penalty = resized(self._penalty, capacity, 1.0)
        self._samples = resized(self._samples, capacity, 0.0)
        self._static = resized(self._static, capacity, 0.0)
        self._score_scratch = np.empty(capacity, dtype=np.float64)
        self._part_scratch = np.empty(capacity, dtype=np.float64)
        self._eta_ranks.grow(capacity)

    def _set_slots(self, row: int, miner: IndexedMiner) -> None:
        self._has_slot[row] = not miner.busy and miner.queue_len < miner.max_parallel
        free = max(0, miner.max_parallel - miner.queue_len)
        self._load[row] = clamp01(free / miner.max_parallel) if miner.max_parallel > 0 else 0.0

    def _set_lease(self, row: int, lease: float) -> None:
        self._lease[row] = lease
        online = lease > self._online_at
        if online != self._online[row]:
            self._online[row] = online
            self._n_online += 1 if online else -1
        if online and lease < self._online_until:
            self._online_until = lease

    def _online_flags(self, now: float) -> BoolArray:
        """Per row (up to the last in use), whether its lease runs past `now`."""
        n = self._size
        if not self._online_at <= now < self._online_until:
            lease = self._lease[:n]
            online = self._online[:n]
            np.greater(lease, now, out=online)
            self._n_online = int(np.count_nonzero(online))
            self._online_at = now
            self._online_until = float(lease[online].min()) if self._n_online else math.inf
        return self._online[:n]

    def _set_price(self, row: int, price: float) -> None:
        self._price[row] = price
        self._price_extremes.priced(row, price)

    def _set_eta(self, row: int, eta_ms: float | None) -> None:
        new = np.nan if eta_ms is None else float(eta_ms)
        old = float(self._eta[row])
        if new != old and not (math.isnan(new) and math.isnan(old)):
            self._eta[row] = new
            self._eta_known[row] = 0.0 if math.isnan(new) else 1.0
            self._eta_ranks.touch(row)

    def _set_penalty(self, row: int, factor: float) -> None:
        self._penalty[row] = effective = clamp01(factor)
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
