"""Which rows carry which tags or capabilities: rows per token, with a cache of recent lookups."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np

from poolhub.domain.matching.arrays import BoolArray, HitArray, IntArray, resized

# Token sets whose filter results are kept, per kind (tags, capabilities): as many as fit in the budget (two
# bytes a row each), within the bounds. Coordinators ask for many model combinations (every pair of a dozen
# models is 78), and a miss costs a pass per popular token (~60 µs at 100,000 miners).
_TOKEN_CACHE_BYTES: Final = 16 << 20
_TOKEN_CACHE_MIN: Final = 32
_TOKEN_CACHE_MAX: Final = 256
# A token held by this many rows also keeps a column of flags, set in place as rows gain or lose it: turning
# its row set into an array after every change would cost a match ~1 ms per 50k rows. Below half of it, the
# column goes again, so a token hovering at the bound does not flip at each change.
_COLUMN_MIN: Final = 1024
_NO_TOKENS: Final[frozenset[str]] = frozenset()


class TokenRows:
    """An inverted index: for each token, the rows that carry it; for each row, its tokens.

    Setting a row's tokens costs O(its own tokens) whatever the vocabulary, and a token no row carries any
    more is forgotten, so `len()` is the number of distinct tokens in the directory. Matches ask for the same
    few token sets over and over (the popular models) while miners rarely change their tags, so each set's
    result is cached until some row's tokens actually change; a lookup costs O(rows that hold its tokens).
    """

    def __init__(self) -> None:
        # A token carried by one row (most tags) maps to that row, by several to a set: no set per token.
        self._rows_of: dict[str, int | set[int]] = {}
        self._arrays: dict[str, IntArray] = {}
        self._columns: dict[str, BoolArray] = {}
        self._tokens_of: dict[int, frozenset[str]] = {}
        self._version = 0
        self._cache: dict[frozenset[str], tuple[int, int, BoolArray, HitArray]] = {}

    def __len__(self) -> int:
        return len(self._rows_of)

    def __contains__(self, token: object) -> bool:
        return token in self._rows_of

    def new_tokens(self, tokens: Iterable[str]) -> set[str]:
        """The tokens no row carries yet."""
        return {token for token in tokens if token not in self._rows_of}

    def set_row(self, row: int, tokens: Iterable[str]) -> None:
        new = frozenset(tokens)
        old = self._tokens_of.get(row, _NO_TOKENS)
        if new == old:
            return
        rows_of, arrays, columns = self._rows_of, self._arrays, self._columns
        for token in old - new:
            rows = rows_of[token]
            arrays.pop(token, None)
            if isinstance(rows, int):
                del rows_of[token]
            else:
                rows.discard(row)
                if len(rows) == 1:
                    rows_of[token] = next(iter(rows))
                column = columns.get(token)
                if column is not None:
                    column[row] = False
                    if len(rows) < _COLUMN_MIN // 2:
                        del columns[token]
        for token in new - old:
            rows = rows_of.setdefault(token, row)
            if rows != row:
                if isinstance(rows, int):
                    rows_of[token] = {rows, row}
                else:
                    rows.add(row)
                    self._set_flag(token, rows, row)
                arrays.pop(token, None)
        if new:
            self._tokens_of[row] = new
        else:
            self._tokens_of.pop(row, None)
        self._version += 1

    def _set_flag(self, token: str, rows: set[int], row: int) -> None:
        column = self._columns.get(token)
        if column is None:
            if len(rows) >= _COLUMN_MIN:
                column = np.zeros(max(rows) + 1, dtype=np.bool_)
                column[np.fromiter(rows, dtype=np.intp, count=len(rows))] = True
                self._columns[token] = column
            return
        if row >= len(column):
            column = self._columns[token] = resized(column, max(row + 1, 2 * len(column)), False)
        column[row] = True

    def _rows_array(self, token: str) -> IntArray | None:
        array = self._arrays.get(token)
        if array is None:
            rows = self._rows_of.get(token)
            if rows is None:
                return None
            if isinstance(rows, int):
                array = np.array([rows], dtype=np.intp)
            else:
                array = np.fromiter(rows, dtype=np.intp, count=len(rows))
            self._arrays[token] = array
        return array

    def hits(self, tokens: Sequence[str], n: int) -> tuple[BoolArray, HitArray]:
        """Per row: whether it has any of the tokens, and how many of them (read-only, possibly cached)."""
        key = frozenset(tokens)
        cached = self._cache.pop(key, None)
        if cached is None or cached[0] != self._version or cached[1] != n:
            # Items hold at most 64 tokens, so a row's count always fits in a byte.
            counts: HitArray = np.zeros(n, dtype=np.uint8)
            for token in key:
                column = self._columns.get(token)
                if column is not None:
                    width = min(n, len(column))
                    np.add(counts[:width], column[:width], out=counts[:width])
                    continue
                rows = self._rows_array(token)
                # A token no miner declared has no rows and matches nobody; rows of one token are distinct,
                # so a fancy-indexed add counts each once.
                if rows is not None:
                    counts[rows[rows < n] if rows.size and int(rows.max()) >= n else rows] += 1
            present = counts != 0
            present.flags.writeable = False
            counts.flags.writeable = False
            cached = (self._version, n, present, counts)
        self._cache[key] = cached
        if len(self._cache) > min(
            _TOKEN_CACHE_MAX, max(_TOKEN_CACHE_MIN, _TOKEN_CACHE_BYTES // (2 * max(n, 1)))
        ):
            del self._cache[next(iter(self._cache))]
        return cached[2], cached[3]
