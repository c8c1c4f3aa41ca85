"""Array types shared by the index's columns, and the one way they grow."""

from __future__ import annotations

from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
HitArray = npt.NDArray[np.uint8] | npt.NDArray[np.uint16]
# Below this many rows, narrowing a set by a sampled threshold or a side list costs more than it saves.
NARROW_MIN: Final = 256
_Scalar = TypeVar("_Scalar", bound=np.generic)


def resized(array: npt.NDArray[_Scalar], capacity: int, fill: object) -> npt.NDArray[_Scalar]:
    grown: npt.NDArray[_Scalar] = np.full(capacity, fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def round6(values: FloatArray) -> FloatArray:
    """np.round(values, 6), bit for bit: numpy rounds by multiplying by 1e6, rint and dividing back; calling
    those three ufuncs directly skips ~3 µs of wrappers, which is most of the cost for the few scores rounded
    per match."""
    out = np.multiply(values, 1e6)
    np.rint(out, out=out)
    np.true_divide(out, 1e6, out=out)
    return out
