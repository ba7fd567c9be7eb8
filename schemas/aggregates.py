"""The aggregates wire format: columnar JSON frames, many window results per Kafka message.

One message on ``millstream.aggregates`` holds the windows of one size that closed
together for one source, as parallel arrays (row ``i`` is ``tag[i]`` over
``[window_start[i], window_start[i] + window_ms)``)::

    {"schema": "millstream.aggregates.v2", "source": "opcua-sim", "window_ms": 1000,
     "tag": ["acme/.../spindle_temp", ...], "window_start": [1763760001000, ...],
     "count": [10, ...], "min": [...], "max": [...], "mean": [...], "std": [...],
     "first": [...], "last": [...], "good_share": [1.0, ...]}

Why frames: one message per (tag, window) costs a fixed overhead per message; at
thousands of tags that overhead, not the window maths, would bound the worker. The older
one-message-per-aggregate form (``millstream.aggregates.v1``, :class:`Aggregate`) still
decodes: :func:`aggregate_columns` reads both for the ClickHouse sink.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import msgspec

from schemas.events import Aggregate
from schemas.exceptions import ContractError
from schemas.jsondoc import load_object

__all__ = ["AGGREGATE_COLUMNS", "SCHEMA", "AggregateFrame", "aggregate_columns"]

SCHEMA = "millstream.aggregates.v2"
# the aggregates table's columns, in Aggregate's field order (the sink inserts these)
AGGREGATE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Aggregate))
_STATS = ("min", "max", "mean", "std", "first", "last", "good_share")
_I64 = (-(2**63), 2**63 - 1)
_NUMBER_TYPES = frozenset({int, float})
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class AggregateFrame:
    """Window results of one size for one source, column by column."""

    source: str
    window_ms: int
    tag: list[str]
    window_start: list[int]
    count: list[int]  # readings with a value (GOOD or UNCERTAIN); >= 1
    min: list[float]
    max: list[float]
    mean: list[float]
    std: list[float]  # population standard deviation
    first: list[float]  # value of the earliest reading (source ts, then seq)
    last: list[float]  # value of the latest reading (source ts, then seq)
    good_share: list[float]  # GOOD readings / all readings of the tag in the window

    def __len__(self) -> int:
        return len(self.tag)

    def key(self) -> bytes:
        """The Kafka key: the source, so one source's results stay in order."""
        return self.source.encode()

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"schema": SCHEMA}
        doc.update({f.name: getattr(self, f.name) for f in fields(self)})
        return doc

    def encode(self) -> bytes:
        """Compact JSON (msgspec: ~10x ``json.dumps`` on thousands of floats); ValueError
        for a statistic that is not finite, which JSON cannot carry."""
        out = _ENCODER.encode(self.to_dict())
        if b"null" in out:  # msgspec writes NaN and infinity as null: find which
            for name in _STATS:
                bad = [x for x in getattr(self, name) if not math.isfinite(x)]
                if bad:
                    raise ValueError(f"aggregate frame of {self.source}: {name} {bad[0]!r} "
                                     "is not finite, and JSON has no NaN or infinity")
        return out

    def chunks(self, max_rows: int) -> list[AggregateFrame]:
        """This frame cut into frames of at most ``max_rows`` rows (Kafka message size)."""
        if len(self) <= max_rows:
            return [self]
        names = [f.name for f in fields(self)][2:]
        return [
            AggregateFrame(self.source, self.window_ms,
                           *(getattr(self, n)[lo:lo + max_rows] for n in names))
            for lo in range(0, len(self), max_rows)
        ]

    def aggregates(self) -> list[Aggregate]:
        """One :class:`Aggregate` per row."""
        w = self.window_ms
        return [
            Aggregate(tag, ws, ws + w, n, lo, hi, mu, sd, fv, lv, w, g)
            for tag, ws, n, lo, hi, mu, sd, fv, lv, g in zip(
                self.tag, self.window_start, self.count, self.min, self.max, self.mean,
                self.std, self.first, self.last, self.good_share, strict=True)
        ]

    def columns(self) -> list[list[Any]]:
        """The rows as columns in :data:`AGGREGATE_COLUMNS` order (for ClickHouse)."""
        n, w = len(self), self.window_ms
        ends = [ws + w for ws in self.window_start]
        by_name: dict[str, list[Any]] = {
            "tag": self.tag, "window_start": self.window_start, "window_end": ends,
            "count": self.count, "window_ms": [w] * n,
            **{s: getattr(self, s) for s in _STATS},
        }
        return [by_name[c] for c in AGGREGATE_COLUMNS]

    @classmethod
    def decode(cls, payload: bytes | str | None) -> AggregateFrame:
        """Parse and validate one frame; raises :class:`ContractError` naming the fault."""
        return cls.from_dict(load_object(payload))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> AggregateFrame:
        if doc.get("schema") != SCHEMA:
            raise ContractError("wrong-schema", f"schema is {doc.get('schema')!r}, want {SCHEMA!r}")
        source, w = doc.get("source"), doc.get("window_ms")
        if not isinstance(source, str) or not source:
            raise ContractError("bad-field", "source must be a non-empty string")
        if type(w) is not int or not 0 < w < 2**32:
            raise ContractError("bad-field", f"window_ms={w!r} must be an integer in 1..2^32-1")
        cols: dict[str, list[Any]] = {}
        for f in fields(cls):
            if f.name in ("source", "window_ms"):
                continue
            col = doc.get(f.name)
            if not isinstance(col, list):
                raise ContractError("bad-field", f"{f.name} must be an array")
            cols[f.name] = col
        n = len(cols["tag"])
        if any(len(c) != n for c in cols.values()):
            raise ContractError("bad-field", f"every column must be as long as tag ({n})")
        if not all(type(t) is str and t for t in cols["tag"]):
            raise ContractError("bad-field", "every tag must be a non-empty string")
        lo, hi = _I64[0], _I64[1] - w
        if not all(type(x) is int and lo <= x <= hi for x in cols["window_start"]):
            raise ContractError("bad-field", "every window_start must be an integer (Unix ms)")
        if not all(type(x) is int and 1 <= x < 2**32 for x in cols["count"]):
            raise ContractError("bad-field", "every count must be an integer in 1..2^32-1")
        for name in _STATS:
            col = cols[name]
            if not set(map(type, col)) <= _NUMBER_TYPES:
                raise ContractError("bad-field", f"every {name} must be a number")
            try:
                finite = all(math.isfinite(x) for x in col)
            except OverflowError:
                finite = False
            if not finite:
                raise ContractError("bad-field", f"every {name} must be a finite number")
        if not all(0 <= g <= 1 for g in cols["good_share"]):
            raise ContractError("bad-field", "every good_share must be within 0..1")
        return cls(source, w, **cols)


def aggregate_columns(payload: bytes | str | None) -> Sequence[list[Any]]:
    """A message of the aggregates topic, frame (v2) or single aggregate (v1), as columns
    in :data:`AGGREGATE_COLUMNS` order."""
    doc = load_object(payload)
    if doc.get("schema") == Aggregate.SCHEMA:
        agg = Aggregate.from_dict(doc)
        _check_v1(agg)
        return [[getattr(agg, c)] for c in AGGREGATE_COLUMNS]
    return AggregateFrame.from_dict(doc).columns()


def _check_v1(agg: Aggregate) -> None:
    """What the table's column types need of a single aggregate beyond its JSON types."""
    ranges = {"window_start": _I64, "window_end": _I64, "count": (0, 2**32 - 1),
              "window_ms": (0, 2**32 - 1)}
    for name, (lo, hi) in ranges.items():
        value = getattr(agg, name)
        if not lo <= value <= hi:
            raise ContractError("out-of-range", f"{name}={value} does not fit its column")
    for name in _STATS:
        value = getattr(agg, name)
        try:
            ok = value is None or math.isfinite(value)
        except OverflowError:
            ok = False
        if not ok:
            raise ContractError("out-of-range", f"{name}={value} is not a finite Float64")
