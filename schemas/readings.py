"""The readings wire format: columnar JSON frames, many readings per Kafka message.

One Kafka message on ``millstream.readings`` is one *frame*: the readings one source
(one connector instance) collected in a short interval, as parallel arrays::

    {"schema": "millstream.readings.v1", "source": "opcua-sim", "epoch": 1763760000123,
     "seq": 1201,
     "tag": ["acme/plant1/machining/line1/cnc-01/spindle_temp", ...],
     "ts": [1763760001000, ...], "value": [71.3, ...], "quality": [0, ...]}

Reading ``i`` of the frame has sequence number ``seq + i``. Sequence numbers count up
from 1 per (source, epoch) with no gaps, so a consumer can prove nothing was lost.
Three more arrays are optional, present only when some reading has an entry:
``server_ts`` (the OPC-UA server timestamp, Unix ms), ``status`` (the device's status
name when it is not plain Good, e.g. ``BadNodeIdUnknown``, or why a reading has no value,
e.g. ``gap: connection lost``) and ``text`` (the value of a text tag, whose ``value`` is
null).
Why frames: Faust's cost per Kafka message dominates (DESIGN.md), so a message carries
hundreds of readings and the per-reading work is vectorised with NumPy. Decoding one is
on every consumer's hot path: msgspec parses and type-checks a well-formed frame in C;
anything it does not accept goes through the plain-Python checks, which name the fault.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Annotated, Any

import msgspec
import numpy as np
import numpy.typing as npt

from schemas.exceptions import ContractError
from schemas.jsondoc import load_object

SCHEMA = "millstream.readings.v1"
__all__ = ["SCHEMA", "FrameArrays", "FrameBuilder", "Quality", "Reading", "ReadingFrame"]


class Quality(IntEnum):
    """Reading quality, following OPC UA's three status severities."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one tag at one source timestamp."""

    tag: str
    ts: int  # source timestamp, Unix epoch milliseconds, UTC
    value: float | None  # None when the device gave no usable value (quality is then BAD)
    quality: Quality
    source: str
    epoch: int
    seq: int
    server_ts: int | None = None  # OPC-UA server timestamp, Unix ms
    status: str | None = None  # device status name or the reason there is no value
    text: str | None = None  # value of a text tag (value is then None)


@dataclass(frozen=True, slots=True)
class FrameArrays:
    """A frame as NumPy arrays, for vectorised processing."""

    tag: list[str]
    ts: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]  # NaN where the reading has no value
    quality: npt.NDArray[np.int8]
    seq: npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ReadingFrame:
    """A batch of readings from one source: the unit of the readings topic."""

    source: str
    epoch: int
    seq: int
    tag: list[str]
    ts: list[int]
    value: list[float | None]
    quality: list[int]
    server_ts: list[int | None] | None = None
    status: list[str | None] | None = None
    text: list[str | None] | None = None

    def __len__(self) -> int:
        return len(self.tag)

    @property
    def last_seq(self) -> int:
        return self.seq + len(self.tag) - 1

    def key(self) -> bytes:
        """The Kafka message key: the source, so a source's frames stay in order."""
        return self.source.encode()

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "source": self.source,
            "epoch": self.epoch,
            "seq": self.seq,
            "tag": self.tag,
            "ts": self.ts,
            "value": self.value,
            "quality": self.quality,
        }
        for name in _OPTIONAL:
            col = getattr(self, name)
            if col is not None and any(x is not None for x in col):
                doc[name] = col
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def decode(cls, payload: bytes | str | None) -> ReadingFrame:
        """Parse and validate one frame; raises :class:`ContractError` naming the fault."""
        if payload is None:
            raise ContractError("empty-message", "the frame has no value")
        frame = _decode_fast(payload)
        return frame if frame is not None else cls.decode_checked(payload)

    @classmethod
    def decode_checked(cls, payload: bytes | str) -> ReadingFrame:
        """:meth:`decode` in plain Python: slower, and the one that names a fault."""
        doc = load_object(payload, "frame")
        if doc.get("schema") != SCHEMA:
            raise ContractError("wrong-schema", f"schema is {doc.get('schema')!r}, want {SCHEMA!r}")
        source, epoch, seq = doc.get("source"), doc.get("epoch"), doc.get("seq")
        if not isinstance(source, str) or not source:
            raise ContractError("bad-field", "source must be a non-empty string")
        if not isinstance(epoch, int) or not isinstance(seq, int) or not _is_int(seq) or seq < 1:
            raise ContractError("bad-field", "epoch and seq must be integers, seq >= 1")
        cols: dict[str, list[Any]] = {}
        for name in ("tag", "ts", "value", "quality"):
            col = doc.get(name)
            if not isinstance(col, list):
                raise ContractError("bad-field", f"{name} must be an array")
            cols[name] = col
        n = len(cols["tag"])
        if n == 0 or any(len(c) != n for c in cols.values()):
            raise ContractError(
                "bad-field", "tag, ts, value and quality must be non-empty and of equal length"
            )
        # type checks by set of types: C-speed, and bool (a subclass of int) is its own type
        tag, ts, value, quality = cols["tag"], cols["ts"], cols["value"], cols["quality"]
        if set(map(type, tag)) != {str} or not all(tag):
            raise ContractError("bad-field", "every tag must be a non-empty string")
        if set(map(type, ts)) != {int}:
            raise ContractError("bad-field", "every ts must be an integer (Unix ms)")
        if set(map(type, quality)) != {int} or not set(quality) <= _QUALITIES:
            raise ContractError("bad-field", "every quality must be 0, 1 or 2")
        if not set(map(type, value)) <= _VALUE_TYPES:
            bad = next(v for v in value if type(v) not in _VALUE_TYPES)
            raise ContractError("bad-field", f"value {bad!r} is not a number or null")
        try:
            floats = np.asarray(value, dtype=np.float64)  # null -> NaN; JSON has no NaN or inf
        except OverflowError as exc:  # an integer beyond any float
            raise ContractError("bad-field", "every value must be a finite number or null "
                                f"({exc})") from exc
        if np.isinf(floats).any() or np.isnan(floats).sum() != value.count(None):
            raise ContractError("bad-field", "every value must be a finite number or null")
        extra = {name: _optional(doc, name, n) for name in _OPTIONAL}
        return cls(source, epoch, seq, cols["tag"], cols["ts"], cols["value"], cols["quality"],
                   **extra)

    def arrays(self) -> FrameArrays:
        n = len(self.tag)
        return FrameArrays(
            tag=self.tag,
            ts=np.asarray(self.ts, dtype=np.int64),
            value=np.asarray(self.value, dtype=np.float64),  # None becomes NaN
            quality=np.asarray(self.quality, dtype=np.int8),
            seq=np.arange(self.seq, self.seq + n, dtype=np.int64),
        )

    def readings(self) -> Iterator[Reading]:
        for i, tag in enumerate(self.tag):
            yield Reading(
                tag,
                self.ts[i],
                self.value[i],
                Quality(self.quality[i]),
                self.source,
                self.epoch,
                self.seq + i,
                None if self.server_ts is None else self.server_ts[i],
                None if self.status is None else self.status[i],
                None if self.text is None else self.text[i],
            )


_QUALITIES = frozenset({0, 1, 2})
_VALUE_TYPES = frozenset({int, float, type(None)})
_OPTIONAL = ("server_ts", "status", "text")
_OPTIONAL_TYPES: dict[str, frozenset[type]] = {
    "server_ts": frozenset({int, type(None)}),
    "status": frozenset({str, type(None)}),
    "text": frozenset({str, type(None)}),
}


def _optional(doc: dict[str, Any], name: str, n: int) -> list[Any] | None:
    """An optional column: absent or null is None; else an array of n entries of its type."""
    col = doc.get(name)
    if col is None:
        return None
    if not isinstance(col, list) or len(col) != n:
        raise ContractError("bad-field", f"{name} must be an array as long as tag ({n})")
    if not set(map(type, col)) <= _OPTIONAL_TYPES[name]:
        bad = next(x for x in col if type(x) not in _OPTIONAL_TYPES[name])
        raise ContractError("bad-field", f"{name} entry {bad!r} has the wrong type")
    return col


_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# a JSON integer value beyond Int64 is left to the slow path (it decides whether a float holds it)
_Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Wire(msgspec.Struct):
    """The frame as msgspec checks it in C: the same rules as the slow path, or stricter
    (the slow path then decides). Unknown fields are ignored by both."""

    schema: str
    source: _NonEmpty
    epoch: int
    seq: Annotated[int, msgspec.Meta(ge=1)]
    tag: list[_NonEmpty]
    ts: list[int]
    value: list[_Int64 | float | None]  # msgspec refuses NaN, Infinity and 1e400 itself
    quality: list[Annotated[int, msgspec.Meta(ge=0, le=2)]]
    server_ts: list[int | None] | None = None
    status: list[str | None] | None = None
    text: list[str | None] | None = None


_WIRE = msgspec.json.Decoder(_Wire)


def _decode_fast(payload: bytes | str) -> ReadingFrame | None:
    """A well-formed frame, or None: then the slow path finds the fault and names it."""
    try:
        w = _WIRE.decode(payload)
    except (msgspec.MsgspecError, ValueError, TypeError):
        return None
    n = len(w.tag)
    if (w.schema != SCHEMA or not n or len(w.ts) != n or len(w.value) != n
            or len(w.quality) != n):
        return None
    for col in (w.server_ts, w.status, w.text):
        if col is not None and len(col) != n:
            return None
    return ReadingFrame(w.source, w.epoch, w.seq, w.tag, w.ts, w.value, w.quality,
                        w.server_ts, w.status, w.text)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclass
class FrameBuilder:
    """Collects one source's readings into frames and numbers them without gaps.

    ``add()`` readings, then ``flush()`` when ``full`` or on a timer. Not thread-safe.
    """

    source: str
    epoch: int
    max_readings: int = 1000
    next_seq: int = 1
    _tag: list[str] = field(default_factory=list)
    _ts: list[int] = field(default_factory=list)
    _value: list[float | None] = field(default_factory=list)
    _quality: list[int] = field(default_factory=list)
    # optional columns, created when a reading first has an entry
    _server_ts: list[int | None] | None = None
    _status: list[str | None] | None = None
    _text: list[str | None] | None = None

    def add(self, tag: str, ts: int, value: float | None, quality: Quality = Quality.GOOD, *,
            server_ts: int | None = None, status: str | None = None,
            text: str | None = None) -> None:
        """One reading. A missing or non-finite value is BAD quality (a text tag's value is
        its ``text``); ``status`` says why, or names the device's status."""
        if text is not None:
            value = None
        elif value is None or not math.isfinite(value):  # no usable value: BAD, by contract
            value, quality = None, Quality.BAD
        n = len(self._tag)
        self._tag.append(tag)
        self._ts.append(int(ts))
        self._value.append(None if value is None else float(value))
        self._quality.append(int(quality))
        if server_ts is not None or self._server_ts is not None:
            self._server_ts = self._server_ts if self._server_ts is not None else [None] * n
            self._server_ts.append(None if server_ts is None else int(server_ts))
        if status is not None or self._status is not None:
            self._status = self._status if self._status is not None else [None] * n
            self._status.append(status)
        if text is not None or self._text is not None:
            self._text = self._text if self._text is not None else [None] * n
            self._text.append(text)

    @property
    def pending(self) -> int:
        return len(self._tag)

    @property
    def full(self) -> bool:
        return len(self._tag) >= self.max_readings

    @property
    def produced(self) -> int:
        """How many readings have been put into frames so far (the last seq handed out)."""
        return self.next_seq - 1

    def flush(self) -> ReadingFrame | None:
        if not self._tag:
            return None
        frame = ReadingFrame(
            self.source, self.epoch, self.next_seq, self._tag, self._ts, self._value,
            self._quality, self._server_ts, self._status, self._text,
        )
        self.next_seq += len(self._tag)
        self._tag, self._ts, self._value, self._quality = [], [], [], []
        self._server_ts = self._status = self._text = None
        return frame
