"""The cheapest and dearest eligible prices, read from a few listed rows instead of every row."""

from __future__ import annotations

import numpy as np

from poolhub.domain.matching.arrays import NARROW_MIN, BoolArray, FloatArray, IntArray


class PriceExtremes:
    """Rows priced at or below `_low` or at or above `_high`, so that a match with most rows eligible finds
    its cheapest and dearest eligible prices among a few hundred rows rather than gathering every one.

    Every row priced at or below `_low`, or at or above `_high`, is listed. A listed row whose price has
    since moved inwards stays listed, which is harmless: its current price is what gets read.
    """

    def __init__(self) -> None:
        self._low = -np.inf
        self._high = np.inf
        self._listed: IntArray = np.empty(0, dtype=np.intp)
        self._added: list[int] = []
        self._listed_at_size = 0

    def priced(self, row: int, price: float) -> None:
        if price <= self._low or price >= self._high:
            self._added.append(row)
            # Price moves without matches in between must not grow this without bound: relisting reads
            # every price afresh anyway.
            if len(self._added) > max(len(self._listed), NARROW_MIN):
                self._added.clear()
                self._listed_at_size = 0

    def find(self, price: FloatArray, eligible: BoolArray) -> tuple[float, float] | None:
        """The lowest and highest price of the `eligible` rows (at least one); None when the listed rows
        cannot tell."""
        size = len(eligible)
        # Relist as the index doubles, or after more moved prices than a list's worth.
        if size >= 2 * self._listed_at_size:
            self._relist(price[:size])
        elif self._added:
            self._listed = np.concatenate((self._listed, np.array(self._added, dtype=np.intp)))
            self._added.clear()
        listed = self._listed
        listed = listed[eligible[listed]]
        if not len(listed):
            return None
        prices = price[listed]
        cheapest, dearest = float(prices.min()), float(prices.max())
        # Any eligible row that is not listed is priced strictly between the two marks.
        if cheapest > self._low or dearest < self._high:
            return None
        return cheapest, dearest

    def _relist(self, price: FloatArray) -> None:
        size = len(price)
        self._listed_at_size = size
        self._added.clear()
        # Enough rows at each end that a set of most rows almost surely holds some at both.
        ends = min(size - 1, max(NARROW_MIN, size >> 8))
        parted = np.partition(price, (ends, size - 1 - ends))
        self._low, self._high = float(parted[ends]), float(parted[size - 1 - ends])
        self._listed = np.flatnonzero((price <= self._low) | (price >= self._high))
