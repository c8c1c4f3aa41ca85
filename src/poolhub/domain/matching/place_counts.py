"""Prefix sums of small per-place counts, read at a few places without a cumsum over every place."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from poolhub.domain.matching.arrays import IntArray

ByteArray = npt.NDArray[np.uint8]

# Eight places' counts share one little-endian word; multiplying a word by this sums its bytes into the top
# byte, exactly while every partial sum stays below 256.
_BYTE_SUM: Final = np.uint64(0x0101010101010101)
_TOP_BYTE: Final = np.uint64(56)
# _LOW_BYTES[b] keeps a word's lowest b bytes: the places before the b-th of its eight.
_LOW_BYTES: Final = np.array([(1 << (8 * b)) - 1 for b in range(8)], dtype=np.uint64)
# The most a word's eight counts may add up to.
WORD_LIMIT: Final = 255


def byte_counts(places: int) -> ByteArray:
    """Zeroed counts for `places` places plus a spare last one, which index -1 reaches and no prefix reads."""
    return np.zeros((places + 8) // 8 * 8, dtype=np.uint8)


class PlacePrefix:
    """sum(counts[:p]) at any place p (within the places `byte_counts` was sized for), for byte counts whose
    every word of eight sums to WORD_LIMIT or less.

    numpy's cumsum runs at ~1.8 ns per element whatever the dtype, so over 100k places it dominates a match
    that then reads a few thousand prefixes. Summing words of eight counts, then the reads' own partial words,
    costs an eighth of that plus a few passes over the reads.
    """

    def __init__(self, counts: ByteArray) -> None:
        self._words = words = counts.view("<u8")
        sums = words * _BYTE_SUM
        sums >>= _TOP_BYTE
        self._before = np.empty(len(words) + 1, dtype=np.int64)
        self._before[0] = 0
        np.cumsum(sums.view(np.int64), out=self._before[1:])

    def at(self, places: IntArray) -> IntArray:
        word = places >> 3
        partial = _LOW_BYTES.take(places & 7)
        partial &= self._words.take(word)
        partial *= _BYTE_SUM
        partial >>= _TOP_BYTE
        out: IntArray = self._before.take(word)
        out += partial.view(np.int64)
        return out
