"""Ranking a job's candidates over the index's columns: filters, the weighted score, top-k and explains."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import starmap
from typing import Final

import numpy as np
import numpy.typing as npt

from poolhub.domain.matching.arrays import NARROW_MIN, BoolArray, FloatArray, HitArray, IntArray, round6
from poolhub.domain.matching.columns import MinerColumns
from poolhub.domain.matching.explain import failures, rejection_explain, terms_explain
from poolhub.domain.matching.scored import SCORE_SLACK, Scored
from poolhub.domain.matching.values import (
    DEFAULT_EXPLORATION,
    REJECTION_REASONS,
    Candidate,
    ExplorationPolicy,
    Hints,
    MatchQuery,
    MatchResult,
    MinerExplanation,
    ScoreTerms,
    Weights,
)

_SAMPLE_SIZE: Final = 512
# Up to this many contenders, one Python sort of them all beats the dozen numpy calls of a partial pick.
_SORT_ALL: Final = 48
# Tie groups up to this size are ordered by a Python sort of their ids; larger ones use cached id ranks.
_SMALL_TIE_GROUP: Final = 512
# The exploration share is a float, so top_k * share can land a hair under a whole number.
_FLOOR_EPSILON: Final = 1e-9


@dataclass(frozen=True, slots=True)
class _Filtered:
    eligible: BoolArray
    count: int
    rejections: dict[str, int]
    cap_hits: HitArray | None
    capabilities: tuple[str, ...]


class RankedColumns(MinerColumns):
    """The columns plus everything a match reads from them."""

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
        scored: Scored | None = None
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
            self._accel.among(req.accel, n, check("accel"))
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
            self._region.among((hints.region,), n, check("region"))
        if hints.max_price is not None:
            np.less_equal(self._price[:n], float(hints.max_price), out=check("price"))
        if hints.deadline_ms is not None:
            # An unknown eta is NaN and NaN > deadline is False: unknown etas pass, as the contract says.
            out = check("deadline")
            np.greater(self._eta[:n], hints.deadline_ms, out=out)
            np.logical_not(out, out=out)
        online = self._online_flags(now)
        n_online = self._n_online
        rejections = dict.fromkeys(REJECTION_REASONS, 0)
        rejections["offline"] = len(self) - n_online
        block = passes[: len(checked)]
        np.logical_and(block, online, out=block)
        for reason, passed in zip(checked, block, strict=True):
            rejections[reason] = n_online - int(np.count_nonzero(passed))
        eligible = np.logical_and.reduce(block, axis=0)
        count = int(np.count_nonzero(eligible))
        return _Filtered(eligible, count, rejections, cap_hits, capabilities)

    def _score(self, filtered: _Filtered, hints: Hints, weights: Weights) -> Scored:
        """Every eligible miner's partial sum, and its score unless only the contenders' are worth computing.

        Each pass over 100k rows costs ~15 µs, so the weighted sum is regrouped into constants plus a handful
        of products; the per-term values of returned miners are restated afterwards from the same inputs.
        """
        eligible, m = filtered.eligible, filtered.count
        n = len(eligible)
        # Scoring only the contenders, a match computes full-length partial sums once a tenth of the rows are
        # eligible; scoring every eligible miner, once two fifths are. Below that, gathering each column's
        # eligible rows costs less than passes over every row.
        contenders = n >= self._contenders_from_rows
        dense = m * 10 >= n if contenders else m * 5 >= n * 2
        rows = None if dense else np.flatnonzero(eligible)

        def pick(column: FloatArray) -> FloatArray:
            return column[:n] if rows is None else column.take(rows)

        price = pick(self._price)
        constant = 0.0
        max_price = None if hints.max_price is None else float(hints.max_price)
        cheapest = dearest = 0.0
        if max_price is None:
            # Masked reductions, and passes that branch on a scattered mask, are ~10x slower than gathering
            # the eligible prices and reducing those.
            extremes = None if rows is not None else self._price_extremes.find(self._price, eligible)
            if extremes is None:
                own = price if rows is not None else price.take(np.flatnonzero(eligible))
                extremes = float(own.min()), float(own.max())
            cheapest, dearest = extremes
        score = self._score_scratch[: len(price)]
        if max_price is not None and max_price > 0:
            np.multiply(price, -weights.price / max_price, out=score)
            constant += weights.price
        elif max_price is None and dearest > cheapest:
            np.multiply(price, -weights.price / (dearest - cheapest), out=score)
            constant += weights.price * dearest / (dearest - cheapest)
        else:
            score.fill(0.0)
            constant += weights.price
        score += pick(self._static_for(weights))
        cap_hits = None
        if filtered.cap_hits is None:
            constant += weights.cap
        else:
            cap_hits = filtered.cap_hits[:n] if rows is None else filtered.cap_hits.take(rows)
            score += np.multiply(cap_hits, weights.cap / len(filtered.capabilities), dtype=np.float64)
        # Among many rows, counting the eligible etas at each place in the eta order, then reading the ranks
        # of the few contenders for the top k, costs less than ranking every eligible eta; a small subset is
        # ranked in full, by sorting its etas.
        etas = None
        eta = known = None
        if contenders and (rows is None or len(rows) * 40 > n):
            etas = self._eta_ranks.counts(self._eta, self._live, eligible, rows)
            n_known = etas.n_known
        else:
            eta = pick(self._eta)
            known = eta == eta  # NaN, an unknown eta, is the only value unequal to itself
            n_known = int(np.count_nonzero(known if rows is not None else known & eligible))
        constant += weights.latency * 0.5
        scored = Scored(
            rows=rows,
            eligible=eligible,
            count=m,
            partial=score,
            price=price,
            cap_hits=cap_hits,
            n_caps=len(filtered.capabilities),
            max_price=max_price,
            cheapest=cheapest,
            dearest=dearest,
            eta_column=self._eta,
            eta=eta,
            known=known,
            n_known=n_known,
            latency_step=-weights.latency / n_known if n_known else 0.0,
            latency_half=weights.latency * 0.5,
            constant=constant,
            penalty=self._penalty if self._penalised else None,
            etas=etas,
        )
        if etas is None:
            scored.full, scored.lower = self._every_score(scored, score)
        return scored

    def _every_score(
        self, scored: Scored, score: FloatArray
    ) -> tuple[FloatArray, npt.NDArray[np.int32] | IntArray | None]:
        """Every position's score, and lower count if any eta is known, finishing the partial sums `score`."""
        lower = None
        if scored.n_known:
            eta, known = scored.picked_etas()
            lower = self._eta_ranks.lower_counts(self._eta, self._live, scored.eligible, scored.rows, eta)
            # latency = 1 - lower/n_known where the eta is known, 0.5 (folded into the constant) where not.
            part = np.multiply(
                lower, scored.latency_step, dtype=np.float64, out=self._part_scratch[: len(lower)]
            )
            part += scored.latency_half
            # Where the eta is unknown, the part is a zero. Dense, the float column is a free slice and masks
            # faster than booleans; sparse, gathering it costs more than masking with `known`, the same bits.
            part *= self._eta_known[: len(lower)] if scored.rows is None else known
            score += part
        score += scored.constant
        if scored.penalty is not None:
            score *= scored.pick(scored.penalty)
        # Regrouping can leave a score an ulp outside [0, 1], and weights may sum to 1 + 1e-6.
        np.clip(score, 0.0, 1.0, out=score)
        return score, lower

    def _top(self, scored: Scored, member: BoolArray | None, k: int) -> list[int]:
        """The best k eligible positions flagged in `member` (None: all), as `_rank` orders them."""
        if k <= 0:
            return []
        if scored.full is None:
            positions, score = scored.contenders(member, k)
        else:
            positions, score = self._narrow(scored, scored.full, member, k)
        return self._rank(scored, positions, score, k)

    def _rank(self, scored: Scored, positions: IntArray, score: FloatArray, k: int) -> list[int]:
        """The best k of `positions` with scores `score`, by rounded score desc, price asc, miner_id asc."""
        if not len(score):
            return []
        rounded = round6(score)
        price = scored.price[positions]
        if len(positions) > max(k, _SORT_ALL):
            picked = self._pick_k(scored, positions, rounded, price, k)
            positions, rounded, price = positions[picked], rounded[picked], price[picked]
        ids, rows = self._ids, scored.rows_of(positions).tolist()
        keys = zip(
            (-rounded).tolist(), price.tolist(), (ids[row] for row in rows), positions.tolist(), strict=False
        )
        return [key[3] for key in sorted(keys)[:k]]

    def _narrow(
        self, scored: Scored, full: FloatArray, member: BoolArray | None, k: int
    ) -> tuple[IntArray, FloatArray]:
        """Positions flagged in `member` (None: all eligible) that could hold one of the best k, ties
        included, and their scores."""
        dense = scored.rows is None
        positions = None if member is None else np.flatnonzero(member)
        if positions is None:
            score = full
            if dense and len(score) <= NARROW_MIN:
                positions = np.flatnonzero(scored.eligible)
                score = score[positions]
        else:
            score = full[positions]
        # Dense and unnarrowed, `score` still spans ineligible rows, which every step below must skip.
        masked = positions is None and dense
        if len(score) > NARROW_MIN and k < len(score):
            stride = max(1, len(score) // _SAMPLE_SIZE)
            sample = score[::stride]
            if masked:
                sample = sample[scored.eligible[::stride]]
            # The sample is a subset, so its k-th best score is a lower bound of the whole set's k-th best.
            if stride > 1 and len(sample) >= k:
                floor = np.partition(sample, len(sample) - k)[len(sample) - k]
                over = score >= floor - SCORE_SLACK
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
                keep = np.flatnonzero(score >= kth - SCORE_SLACK)
                positions, score = (keep if positions is None else positions[keep]), score[keep]
        if positions is None:
            positions = np.arange(len(score))
        return positions, score

    def _pick_k(
        self, scored: Scored, positions: IntArray, rounded: FloatArray, price: FloatArray, k: int
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
        self, scored: Scored, greedy: list[int], top_k: int, policy: ExplorationPolicy
    ) -> list[tuple[int, bool]]:
        """Give the lowest greedy slots not held by little-known miners to the best little-known left out."""
        n_explore = math.floor(top_k * policy.share + _FLOOR_EPSILON)
        plain = [(pos, False) for pos in greedy]
        if n_explore <= 0 or len(greedy) >= scored.count:
            return plain
        # Most tops already hold enough little-known miners, which reading theirs tells.
        at = np.array(greedy, dtype=np.intp)
        greedy_little = self._little_known(scored, policy, at).tolist()
        in_top = sum(greedy_little)
        if in_top >= n_explore:
            return plain
        little = self._little_known(scored, policy, None)
        if scored.rows is None:
            little &= scored.eligible
        little[at] = False
        newcomers = self._top(scored, little, n_explore - in_top)
        if not newcomers:
            return plain
        held = [pos for pos, is_little in zip(greedy, greedy_little, strict=True) if not is_little]
        dropped = set(held[::-1][: len(newcomers)])
        merged = [(pos, False) for pos in greedy if pos not in dropped]
        merged += [(pos, True) for pos in newcomers[: len(dropped)]]
        listed = np.array([pos for pos, _ in merged], dtype=np.intp)
        final = self._rank(scored, listed, scored.scores(listed), len(merged))
        exploring = dict(merged)
        return [(pos, exploring[pos]) for pos in final]

    def _little_known(
        self, scored: Scored, policy: ExplorationPolicy, positions: IntArray | None
    ) -> BoolArray:
        """Per position (None: every one), whether its miner has too little evidence and enough of the asked
        capabilities to be explored."""
        if positions is None:
            little = scored.pick(self._samples) < policy.max_samples
            hits = scored.cap_hits
        else:
            little = self._samples[scored.rows_of(positions)] < policy.max_samples
            hits = None if scored.cap_hits is None else scored.cap_hits[positions]
        if hits is not None:
            little &= hits >= policy.min_cap * scored.n_caps - 1e-9
        return little

    def _terms(
        self, scored: Scored, positions: IntArray, latencies: list[float]
    ) -> tuple[list[ScoreTerms], list[float]]:
        """Restate the terms and the penalties of a few positions from the columns the score was built from,
        by the same float operations."""
        rows = scored.rows_of(positions)
        columns = zip(
            scored.cap_terms(positions),
            scored.price_terms(positions),
            latencies,
            self._trust[rows].tolist(),
            self._load[rows].tolist(),
            strict=True,
        )
        return list(starmap(ScoreTerms, columns)), self._penalty[rows].tolist()

    def _candidates(
        self, scored: Scored | None, chosen: list[tuple[int, bool]], capabilities: tuple[str, ...]
    ) -> tuple[Candidate, ...]:
        if scored is None or not chosen:
            return ()
        listed = [pos for pos, _ in chosen]
        positions = np.array(listed, dtype=np.intp)
        scores, latencies = scored.scores_and_latencies(listed)
        terms, penalties = self._terms(scored, positions, latencies)
        out = []
        for row, score, term, penalty, (_, exploring) in zip(
            scored.rows_of(positions).tolist(), round6(scores).tolist(), terms, penalties, chosen, strict=True
        ):
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
                    matched_capabilities=tuple([c for c in capabilities if c in have]),
                    explain=terms_explain(term, penalty, exploration=exploring),
                    terms=term,
                    sla_penalty=penalty,
                    exploration=exploring,
                )
            )
        return tuple(out)

    def _explain(
        self,
        query: MatchQuery,
        now: float,
        scored: Scored | None,
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
        failed_checks = failures(self._record(row), query, now)
        if failed_checks:
            text = f"{miner_id} is not eligible: " + ", ".join(detail for _reason, detail in failed_checks)
            failed = tuple(reason for reason, _detail in failed_checks)
            return MinerExplanation(miner_id, True, False, failed, None, None, False, text)
        assert scored is not None, "an eligible miner means something was scored"
        pos = scored.position_of(row)
        full = scored.full
        if full is None:
            full = self._every_score(scored, scored.partial.copy())[0]
        rounded = round6(full)
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
        [terms], [penalty] = self._terms(scored, np.array([pos], dtype=np.intp), scored.latencies([pos]))
        breakdown = terms_explain(terms, penalty, exploration=exploring.get(pos, False))
        text = (
            f"{miner_id} is eligible: ranked {rank} of {scored.count} with score {float(mine):.6f}, "
            f"{status}: {breakdown}"
        )
        return MinerExplanation(miner_id, True, True, (), float(mine), rank, returned, text)
