"""A match's scores: every eligible miner's cheap terms, and exact scores where the ranking needs them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from poolhub.domain.matching.arrays import BoolArray, FloatArray, HitArray, IntArray
from poolhub.domain.matching.eta_ranks import EtaCounts

# Rounding to 6 decimals moves a score by at most 5e-7; anything that could round level with the k-th best
# score is therefore within this of it.
SCORE_SLACK: Final = 2e-6
# The bound on a score from its partial sum skips the rounding of two additions, each under 1e-16 here.
_BOUND_ROUNDING: Final = 1e-9


@dataclass(slots=True)
class Scored:
    """The eligible miners' scores, plus what it takes to restate any one miner's terms.

    A "position" indexes the arrays. Sparse (`rows` set): they hold the eligible rows only, in row order.
    Dense (`rows` None): they span every row, a position is a row, and ineligible rows hold junk that only
    `eligible` tells apart.

    `partial` is the weighted sum of the price, capability, trust and load terms. A score is that plus the
    latency part, plus `constant`, times the SLA penalty, clipped to [0, 1], in that order, so that a score
    is the same to the bit whichever way it is reached. `full` holds every position's score when they were
    all computed up front; otherwise scores are computed as asked, and the latency term needs the eligible
    miners' eta ranks, which `etas` reads for the asked rows only.
    """

    rows: IntArray | None
    eligible: BoolArray
    count: int
    partial: FloatArray
    price: FloatArray
    cap_hits: HitArray | None  # None: every eligible miner has every capability asked for
    n_caps: int
    max_price: float | None
    cheapest: float
    dearest: float
    eta_column: FloatArray  # per row
    eta: FloatArray | None  # per position; None until `picked_etas` when scores are computed as asked
    known: BoolArray | None  # eta == eta, likewise
    n_known: int  # how many eligible miners have a known eta
    latency_step: float  # the latency part is lower * latency_step + latency_half where the eta is known
    latency_half: float
    constant: float
    penalty: FloatArray | None  # per row; None: no miner is penalised
    etas: EtaCounts | None  # None: every score is computed up front, into `full`
    full: FloatArray | None = None
    lower: npt.NDArray[np.int32] | IntArray | None = None  # with `full`: every position's lower count

    def rows_of(self, positions: IntArray) -> IntArray:
        return positions if self.rows is None else self.rows[positions]

    def position_of(self, row: int) -> int:
        return row if self.rows is None else int(np.searchsorted(self.rows, row))

    def pick(self, column: FloatArray) -> FloatArray:
        return column[: len(self.eligible)] if self.rows is None else column.take(self.rows)

    def cap_terms(self, positions: IntArray) -> list[float]:
        if self.cap_hits is None:
            return [1.0] * len(positions)
        terms: list[float] = (self.cap_hits[positions] * (1.0 / self.n_caps)).tolist()
        return terms

    def price_terms(self, positions: IntArray) -> list[float]:
        price = self.price[positions]
        terms: list[float]
        if self.max_price is not None and self.max_price > 0:
            terms = (1.0 - price / self.max_price).tolist()
        elif self.max_price is None and self.dearest > self.cheapest:
            terms = ((self.dearest - price) / (self.dearest - self.cheapest)).tolist()
        else:
            terms = [1.0] * len(positions)
        return terms

    def latencies(self, positions: list[int]) -> list[float]:
        """The latency terms of `positions`."""
        n_known = self.n_known
        if not n_known:
            return [0.5] * len(positions)
        lower, known = self.lower, self.known
        if lower is None or known is None:
            assert self.etas is not None, "scores computed as asked come with their eta counts"
            _, known_at, counts = self._lower_counts(self.etas, np.array(positions, dtype=np.intp))
            return self._latency_terms(known_at, counts)
        # A handful of scalar reads cost less than a gather and a list.
        return [1.0 - float(lower[pos]) / n_known if known[pos] else 0.5 for pos in positions]

    def _latency_terms(self, known: BoolArray, lower: IntArray) -> list[float]:
        n_known = self.n_known
        return [
            1.0 - float(count) / n_known if is_known else 0.5
            for is_known, count in zip(known.tolist(), lower.tolist(), strict=True)
        ]

    def scores_and_latencies(self, positions: list[int]) -> tuple[FloatArray, list[float]]:
        """The exact scores and the latency terms of `positions`, counting their etas' ranks once."""
        at = np.array(positions, dtype=np.intp)
        if self.full is not None or not self.n_known:
            return self.scores(at), self.latencies(positions)
        assert self.etas is not None, "scores computed as asked come with their eta counts"
        rows, known, lower = self._lower_counts(self.etas, at)
        return self._finish(at, rows, known, lower), self._latency_terms(known, lower)

    def scores(self, positions: IntArray) -> FloatArray:
        """The exact scores of `positions`."""
        if self.full is not None:
            return self.full[positions]
        assert self.etas is not None, "scores computed as asked come with their eta counts"
        return self._exact(self.etas, positions)

    def _exact(self, etas: EtaCounts, positions: IntArray) -> FloatArray:
        return self._finish(positions, *self._lower_counts(etas, positions))

    def _lower_counts(self, etas: EtaCounts, positions: IntArray) -> tuple[IntArray, BoolArray, IntArray]:
        """The rows of `positions`, whether their etas are known, and their lower counts (0 where not)."""
        known = self._known(positions)
        rows = self.rows_of(positions)
        lower = np.zeros(len(positions), dtype=np.intp)
        lower[known] = etas.lower(rows[known])
        return rows, known, lower

    def contenders(self, member: BoolArray | None, k: int) -> tuple[IntArray, FloatArray]:
        """Positions flagged in `member` (None: all eligible) that could hold one of the best k among them,
        with their exact scores: every position whose rounded score could reach the k-th best, ties included.

        The fastest miners' scores give a floor for the k-th best score. As the latency part adds at most
        `latency_half`, only positions whose partial sum comes within that of the floor contend, and only
        their etas' ranks are counted.
        """
        etas = self.etas
        assert etas is not None, "scores computed as asked come with their eta counts"
        floor = self._floor_from_fastest(etas, member, k)
        positions = self._within(member, self._partial_cut(floor))
        score = self._exact(etas, positions)
        if len(score) > k:
            floor = max(floor, float(np.partition(score, len(score) - k)[len(score) - k]))
        keep = score >= floor - SCORE_SLACK
        return positions[keep], score[keep]

    def _floor_from_fastest(self, etas: EtaCounts, member: BoolArray | None, k: int) -> float:
        """A lower bound of the k-th best score among `member`, from the miners with the lowest etas.

        Their lower counts are at most the count of every eligible row among them and of every moved eta,
        which bounds their scores from below.
        """
        places = max(etas.size >> 5, 1)
        while True:
            rows = etas.counted_rows(places)
            if self.rows is None:
                positions = rows
            else:
                # Sorted needles let searchsorted resume each search where the last one ended.
                rows = np.sort(rows)
                positions = np.searchsorted(self.rows, rows)
            if member is not None:
                keep = member[positions]
                positions, rows = positions[keep], rows[keep]
            if len(positions) >= k:
                worst = self._finish(positions, rows, self._known(positions), etas.ceiling(places))
                return float(np.partition(worst, len(worst) - k)[len(worst) - k])
            if places >= etas.size:
                return -np.inf
            places *= 2

    def _partial_cut(self, floor: float) -> float:
        """The least partial sum a position needs to have a score of floor - SCORE_SLACK or more."""
        threshold = floor - SCORE_SLACK
        # A penalty can only lower a positive score, but a clipped one may sit at 0 whatever its sum.
        if threshold <= 0.0:
            return -np.inf
        return threshold - self.latency_half - self.constant - _BOUND_ROUNDING

    def _within(self, member: BoolArray | None, cut: float) -> IntArray:
        over = self.partial >= cut
        if member is not None:
            over &= member
        elif self.rows is None:
            over &= self.eligible
        return np.flatnonzero(over)

    def _known(self, positions: IntArray) -> BoolArray:
        if not self.n_known:
            return np.zeros(len(positions), dtype=np.bool_)
        if self.known is not None:
            return self.known[positions]
        eta = self.eta_column[self.rows_of(positions)]
        known: BoolArray = eta == eta
        return known

    def picked_etas(self) -> tuple[FloatArray, BoolArray]:
        """Every position's eta and whether it is known."""
        if self.eta is None or self.known is None:
            self.eta = self.pick(self.eta_column)
            self.known = self.eta == self.eta
        return self.eta, self.known

    def _finish(
        self, positions: IntArray, rows: IntArray, known: BoolArray, lower: IntArray | int
    ) -> FloatArray:
        """Scores from the partial sums, with `lower` counts (or one count for all; junk where the eta is
        unknown, as long as it is finite).

        The same operations in the same order as the full pass, so the same bits; a lower count that is only
        a bound gives a bound of the score the other way round, as every step is monotonic.
        """
        score = self.partial[positions]
        part = np.multiply(lower, self.latency_step, dtype=np.float64)
        part += self.latency_half
        # As in the full pass: where the eta is unknown, the part is a zero, which leaves the partial sum.
        part *= known
        score += part
        score += self.constant
        if self.penalty is not None:
            score *= self.penalty[rows]
        np.clip(score, 0.0, 1.0, out=score)
        return score
