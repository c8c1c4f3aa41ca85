"""Live rows ordered by eta, refreshed lazily, so a latency percentile costs a prefix sum."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

from poolhub.domain.matching.arrays import NARROW_MIN, BoolArray, FloatArray, IntArray, resized
from poolhub.domain.matching.place_counts import WORD_LIMIT, ByteArray, PlacePrefix, byte_counts

# Dirty etas one word of eight places' byte counts can take besides its clean rows.
_DIRTY_PER_WORD: Final = WORD_LIMIT - 8


class EtaRanks:
    """Live rows ordered by eta, so a percentile rank within any subset costs a prefix sum instead of a sort.

    Sorting 100k etas per match would take milliseconds. The order is refreshed lazily instead: rows whose eta
    changed since the last refresh are "dirty" and are ranked on the side until there are enough of them to be
    worth merging back in, which costs a pass over the order rather than a full sort.
    """

    def __init__(self, capacity: int) -> None:
        self._order: IntArray = np.empty(0, dtype=np.intp)
        # Each ordered row's eta as of the last refresh; unknown etas are NaN and sort last.
        self._values: FloatArray = np.empty(0, dtype=np.float64)
        self._known_places = 0
        self._dirty: BoolArray = np.zeros(capacity, dtype=np.bool_)
        self._dirty_rows: IntArray = np.zeros(capacity, dtype=np.intp)
        self._n_dirty = 0
        # An upper bound of the dirty etas counted in any one word of byte counts (see `_settle`).
        self._crowd_bound = 0
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
        self._dirty = resized(self._dirty, capacity, False)
        self._dirty_rows = resized(self._dirty_rows, capacity, 0)
        self._place = resized(self._place, capacity, -1)
        self._start = resized(self._start, capacity, 0)
        self._above = resized(self._above, capacity, 0)
        self._below = resized(self._below, capacity, 0)

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
        if rows is not None and (len(rows) * 40 <= n or len(rows) <= NARROW_MIN):
            return np.searchsorted(np.sort(picked), picked, side="left")
        self._settle(eta, live, n)
        size = len(self._order)
        counted = self._eligible_places(eligible, rows)
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
            # the spare slot and in `base` instead. `_settle` keeps them few enough per word of byte counts.
            np.add.at(counted, above - 1, 1)
            base = int(np.count_nonzero(above == 0))
        prefix_of: Callable[[IntArray], npt.NDArray[np.int32] | IntArray]
        if rows is None:
            # Every row's prefix is read: one cumsum over the places beats reading them word by word.
            prefix = np.empty(size + 1, dtype=np.int32)
            prefix[0] = 0
            np.cumsum(counted[:size], dtype=np.int32, out=prefix[1:])
            prefix_of = prefix.take
        else:
            prefix_of = PlacePrefix(counted).at
        lower = prefix_of(self._start[:n] if rows is None else self._start.take(rows))
        if base:
            lower += base
        if len(dirty):
            below = self._below[dirty]
            at_below = prefix_of(below)
            clean_below = at_below + base - np.searchsorted(np.sort(above), below, side="right")
            dirty_below = np.searchsorted(np.sort(dirty_eta), dirty_eta, side="left")
            lower[dirty if rows is None else np.searchsorted(rows, dirty)] = clean_below + dirty_below
        return lower

    def _eligible_places(self, eligible: BoolArray, rows: IntArray | None) -> ByteArray:
        """1 at each place in the order holding an eligible row (`rows`, or None for all), 0 elsewhere, plus a
        spare last slot that soaks up place -1."""
        size = len(self._order)
        counted = byte_counts(size)
        # Gathering `eligible` along the order costs the same whatever the rows; scattering the rows' places
        # costs per row and is dearer from about a third of the order's size on.
        if rows is None or len(rows) * 3 > size:
            np.take(eligible.view(np.uint8), self._order, out=counted[:size])
        else:
            counted[self._place.take(rows)] = 1
        return counted

    def counts(
        self, eta: FloatArray, live: BoolArray, eligible: BoolArray, rows: IntArray | None
    ) -> EtaCounts:
        """Lower counts within the eligible `rows` (= flatnonzero(eligible)), read anywhere in the order."""
        self._settle(eta, live, len(eligible))
        counted = self._eligible_places(eligible, rows)
        dirty = self._dirty_rows[: self._n_dirty]
        dirty = dirty[eligible[dirty]]
        # Dirty rows' stale places in the order must not count; their current etas count on the side.
        counted[self._place[dirty]] = 0
        dirty_eta = eta[dirty]
        return EtaCounts(
            self._order,
            (self._dirty, self._below, self._start),
            counted,
            self._known_places,
            np.sort(dirty_eta[dirty_eta == dirty_eta]),
            eta,
        )

    def _settle(self, eta: FloatArray, live: BoolArray, n: int) -> None:
        if self._n_dirty > max(NARROW_MIN, n >> 6):
            self._refresh(eta, live)
        if self._unplaced:
            unplaced = np.array(self._unplaced, dtype=np.intp)
            self._unplaced.clear()
            self._above[unplaced] = np.searchsorted(self._values, eta[unplaced], side="right")
            self._below[unplaced] = np.searchsorted(self._values, eta[unplaced], side="left")
            # Each placement adds at most one dirty eta to a word; count exactly only when that could matter.
            self._crowd_bound += len(unplaced)
            if self._crowd_bound > _DIRTY_PER_WORD:
                self._crowd_bound = self._most_in_one_word(eta)
                if self._crowd_bound > _DIRTY_PER_WORD:
                    self._refresh(eta, live)

    def _most_in_one_word(self, eta: FloatArray) -> int:
        """The most dirty etas counted among the eight places of one word of byte counts."""
        dirty = self._dirty_rows[: self._n_dirty]
        dirty_eta = eta[dirty]
        above = self._above[dirty[dirty_eta == dirty_eta]]
        slots = above[above > 0] - 1
        return int(np.bincount(slots >> 3).max()) if len(slots) else 0

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
        self._crowd_bound = 0
        self._unplaced.clear()
        self._order, self._values = order, values
        self._known_places = int(np.count_nonzero(values == values))
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


class EtaCounts:
    """One match's lower counts, readable anywhere in the eta order at once.

    Counting the eligible rows at every place costs two passes over the order (a gather or a scatter, then
    a sum per word of eight places); a read then costs a few passes over the rows read, wherever in the
    order they are, so a match reads only its contenders' ranks.
    """

    def __init__(
        self,
        order: IntArray,
        reaches: tuple[BoolArray, IntArray, IntArray],
        counted: ByteArray,
        known_places: int,
        dirty_etas: FloatArray,
        eta: FloatArray,
    ) -> None:
        """`known_places`: the places holding known etas, which come first in the order."""
        self._order = order
        self._reaches = reaches
        self._counted = counted
        self._prefix = PlacePrefix(counted)
        self._dirty_etas = dirty_etas
        self._eta = eta
        self.n_known = int(self._prefix.at(np.array([known_places]))[0]) + len(dirty_etas)

    @property
    def size(self) -> int:
        return len(self._order)

    def counted_rows(self, places: int) -> IntArray:
        """The eligible rows whose places are among the first `places`."""
        places = min(places, len(self._order))
        return self._order[:places][self._counted[:places].view(np.bool_)]

    def ceiling(self, places: int) -> int:
        """The greatest lower count of any row placed among the first `places`."""
        return int(self._prefix.at(np.array([places]))[0]) + len(self._dirty_etas)

    def reach(self, rows: IntArray) -> IntArray:
        """Per row with a known eta: how many ordered etas are lower than its current one."""
        dirty, below, start = self._reaches
        return np.where(dirty[rows], below[rows], start[rows])

    def lower(self, rows: IntArray) -> IntArray:
        """The lower counts of `rows`, which must have known etas."""
        return self.lower_within(rows, self.reach(rows))

    def lower_within(self, rows: IntArray, reach: IntArray) -> IntArray:
        """The lower counts of `rows`, which must have known etas, given their reaches."""
        below = np.searchsorted(self._dirty_etas, self._eta[rows], side="left")
        return self._prefix.at(reach) + below
