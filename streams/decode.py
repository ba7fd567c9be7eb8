"""Frames in, arrays out: a fast typed parse, the strict decoder, then a rescue per reading.

A well-formed frame is parsed and type-checked in one pass by msgspec (``_fast``); only
when that refuses it does the strict decoder parse it again, to name the fault.

:meth:`ReadingFrame.decode` rejects a whole frame for one bad reading. A NaN (Python's
JSON accepts ``NaN`` and ``Infinity``), a string on a numeric tag, or a timestamp that is
not an integer should cost that reading, not its neighbours: :func:`decode_frame` then
keeps the good readings (with their own sequence numbers) and names each rejected one's
reason. A frame it cannot read at all (not JSON, a bad header, arrays of different
lengths: no reading can be trusted to line up) raises :class:`ContractError`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from schemas.exceptions import ContractError
from schemas.readings import SCHEMA, ReadingFrame

__all__ = ["DecodedFrame", "decode_frame"]

_I64 = (-(2**63), 2**63 - 1)


@dataclass(slots=True)
class DecodedFrame:
    """The readable readings of one frame, and the positions of the others by reason."""

    source: str
    epoch: int
    first_seq: int  # sequence number of the message's first reading
    size: int  # readings in the message, rejected ones included
    tag: list[str]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]  # NaN where the reading has no value
    quality: npt.NDArray[np.int8]
    seq: npt.NDArray[np.int64]
    rejected: dict[str, list[int]] = field(default_factory=dict)


class _Frame(msgspec.Struct):
    """A well-formed frame, as msgspec checks it while parsing (unknown keys ignored)."""

    schema: str
    source: str
    epoch: int
    seq: int
    tag: msgspec.Raw  # decoded only when it differs from the source's last tag array
    ts: list[int]
    value: list[float | None]
    quality: list[Literal[0, 1, 2]]
    server_ts: list[int | None] | None = None
    status: list[str | None] | None = None
    text: list[str | None] | None = None


_STRICT = msgspec.json.Decoder(_Frame)
_TAGS = msgspec.json.Decoder(list[str])
# per source: the last tag array as sent, and as decoded. Connectors send the same tags
# frame after frame; comparing the raw bytes is cheaper than decoding 1000 strings, and
# handing on the same list lets the stages after recognise it by identity.
_LAST_TAGS: dict[str, tuple[msgspec.Raw, list[str]]] = {}
_MAX_SOURCES = 4096


def decode_frame(payload: bytes | str | None) -> DecodedFrame:
    """The frame's readable readings as arrays; ContractError if none can be trusted."""
    fast = _fast(payload)
    if fast is not None:
        return fast
    try:
        frame = ReadingFrame.decode(payload)
        a = frame.arrays()
    except ContractError as exc:
        if exc.reason != "bad-field":
            raise
        return _rescue(payload, exc)
    except OverflowError:  # a timestamp beyond 64 bits: that reading, not its neighbours
        return _rescue(payload, ContractError("bad-field", "a ts does not fit 64 bits"))
    return DecodedFrame(frame.source, frame.epoch, frame.seq, len(frame), a.tag, a.ts,
                        a.value, a.quality, a.seq)


def _fast(payload: bytes | str | None) -> DecodedFrame | None:
    """A frame that keeps every rule of :meth:`ReadingFrame.decode`, parsed and typed in
    C by msgspec (~4x faster than ``json`` plus the checks); None for anything else, which
    the strict decoder then parses again to name the fault (or rescue the good readings).
    """
    if payload is None:
        return None
    try:
        f = _STRICT.decode(payload)
        tag = _tags(f.source, f.tag)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    n = len(tag)
    if (f.schema != SCHEMA or not f.source or f.seq < 1 or n == 0 or len(f.ts) != n
            or len(f.value) != n or len(f.quality) != n
            or any(c is not None and len(c) != n for c in (f.server_ts, f.status, f.text))):
        return None
    try:
        ts = np.asarray(f.ts, np.int64)
        seq = np.arange(f.seq, f.seq + n, dtype=np.int64)
    except OverflowError:
        return None
    value = np.asarray(f.value, np.float64)  # null -> NaN
    if np.isinf(value).any():
        return None
    return DecodedFrame(f.source, f.epoch, f.seq, n, tag, ts, value,
                        np.asarray(f.quality, np.int8), seq)


def _tags(source: str, raw: msgspec.Raw) -> list[str]:
    """The tag array of a frame of ``source`` (shared with the frames that sent the same
    one: do not modify it); ValidationError unless it is non-empty strings."""
    last = _LAST_TAGS.get(source)
    if last is not None and last[0] == raw:
        return last[1]
    tag = _TAGS.decode(raw)
    if not all(tag):
        raise msgspec.ValidationError("a tag is an empty string")
    if len(_LAST_TAGS) >= _MAX_SOURCES:  # a bound, not a policy
        _LAST_TAGS.clear()
    _LAST_TAGS[source] = (raw.copy(), tag)
    return tag


def _rescue(payload: bytes | str | None, original: ContractError) -> DecodedFrame:
    doc = json.loads(payload or b"")  # the strict decoder parsed it already
    source, epoch, seq = doc.get("source"), doc.get("epoch"), doc.get("seq")
    cols = [doc.get(name) for name in ("tag", "ts", "value", "quality")]
    if (not isinstance(source, str) or not source or type(epoch) is not int
            or type(seq) is not int or seq < 1 or not all(isinstance(c, list) for c in cols)):
        raise original
    tag, ts, value, quality = cols
    n = len(tag)
    if n == 0 or any(len(c) != n for c in cols):
        raise original
    if not (_I64[0] <= epoch <= _I64[1] and seq + n - 1 <= _I64[1]):
        raise ContractError("bad-field", "epoch or seq does not fit a 64-bit integer")
    keep: list[int] = []
    rejected: dict[str, list[int]] = {}
    vals: list[float] = []
    for i in range(n):
        reason = _problem(tag[i], ts[i], value[i], quality[i])
        if reason is None:
            keep.append(i)
            vals.append(math.nan if value[i] is None else float(value[i]))
        else:
            rejected.setdefault(reason, []).append(i)
    return DecodedFrame(
        source, epoch, seq, n, [tag[i] for i in keep],
        np.asarray([ts[i] for i in keep], np.int64), np.asarray(vals, np.float64),
        np.asarray([quality[i] for i in keep], np.int8),
        np.asarray([seq + i for i in keep], np.int64), rejected,
    )


def _problem(tag: object, ts: object, value: object, quality: object) -> str | None:
    """Why one reading cannot be used, as a short stable reason; None if it can."""
    if type(tag) is not str or not tag:
        return "bad-tag"
    if type(ts) is not int or not _I64[0] <= ts <= _I64[1]:
        return "bad-timestamp"
    if type(quality) is not int or quality not in (0, 1, 2):
        return "bad-quality"
    if value is None:
        return None
    if type(value) not in (int, float):
        return "non-numeric-value"
    try:
        finite = math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:  # an integer too large for a float
        finite = False
    return None if finite else "non-finite-value"
