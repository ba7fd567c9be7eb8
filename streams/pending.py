"""Frames waiting to be folded into a stream's panes, and their place in a snapshot.

:class:`streams.windows.WindowStore` folds frames in batches, at window boundaries (see
its module). Between two boundaries a stream's frames wait as a list of column tuples.
A snapshot carries them as they are (concatenated: folding concatenates them anyway), so a
restored stream folds exactly the batch the original would have, and its windows come out
with the same values to the last bit, however the checkpoints fall.

Lifecycle: ``batch_to_doc(batches, arrays=...)`` in a snapshot;
``batch_from_doc(doc)`` on restore.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.readings import Quality
from streams.panes import F64, I64

__all__ = ["Batch", "batch_from_doc", "batch_to_doc", "concat"]

# (slot, ts, seq, value, quality, valid): one row per reading, in arrival order
Batch = tuple[I64, I64, I64, F64, npt.NDArray[np.int8], npt.NDArray[np.bool_]]


def concat(batches: Sequence[Batch]) -> Batch:
    """The batches as one, rows in order."""
    if len(batches) == 1:
        return batches[0]
    ids, ts, seq, value, quality, valid = (np.concatenate(c)
                                           for c in zip(*batches, strict=True))
    return ids, ts, seq, value, quality, valid


def batch_to_doc(batches: Sequence[Batch], *, arrays: bool) -> dict[str, Any] | None:
    """The waiting frames as plain data (None: none wait); NumPy arrays with ``arrays``,
    else lists with a missing value as null (strict JSON)."""
    if not batches:
        return None
    ids, ts, seq, value, quality, _ = concat(batches)
    cols: dict[str, npt.NDArray[Any]] = {"slot": ids, "ts": ts, "seq": seq, "value": value,
                                         "quality": quality}
    if arrays:
        return cols
    doc: dict[str, Any] = {name: col.tolist() for name, col in cols.items()}
    doc["value"] = [None if v != v else v for v in doc["value"]]  # NaN: no value
    return doc


def batch_from_doc(doc: dict[str, Any]) -> Batch:
    """The inverse of :func:`batch_to_doc`."""
    value = np.asarray([np.nan if v is None else v for v in doc["value"]]
                       if isinstance(doc["value"], list) else doc["value"], np.float64)
    quality = np.asarray(doc["quality"], np.int8)
    valid = (quality != Quality.BAD) & ~np.isnan(value)
    return (np.asarray(doc["slot"], np.int64), np.asarray(doc["ts"], np.int64),
            np.asarray(doc["seq"], np.int64), value, quality, valid)
