"""Which rows carry which tags or capabilities, as bitsets with a cache of recent lookups."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from poolhub.domain.matching.arrays import BoolArray, HitArray, resized

# Token sets whose filter results are kept, per kind (tags, capabilities).
_TOKEN_CACHE_SIZE: Final = 32


class TokenBits:
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
        self._words = [resized(word, capacity, 0) for word in self._words]

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
