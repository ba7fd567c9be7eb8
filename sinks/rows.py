"""Messages as ClickHouse columns: readings frames and events, checked before batching.

Readings frames become one row per reading, column-oriented straight from the frame's
arrays (DateTime64(3) columns take the Unix-ms integers as ticks, no datetime objects).
Values that cannot fit their column are refused here, per message, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from schemas.exceptions import ContractError
from schemas.readings import ReadingFrame
from schemas.twin import TwinRecord

__all__ = ["READINGS_COLUMNS", "TWIN_COLUMNS", "event_columns", "frame_columns", "twin_columns"]

READINGS_COLUMNS = ("tag", "ts", "value", "quality", "source", "epoch", "seq", "server_ts",
                    "status", "text", "unit")
_I64 = (-(2**63), 2**63 - 1)
_U64 = (0, 2**64 - 1)
# integer columns whose ClickHouse type is narrower than a Python int: checked before
# batching, so one out-of-range value cannot make a whole batch fail forever
_INT_RANGES: dict[str, tuple[int, int]] = {
    "count": (0, 2**32 - 1), "partition": (-(2**31), 2**31 - 1), "offset": _I64,
    "window_start": _I64, "window_end": _I64, "detected_at": _I64, "issued_at": _I64,
    "expires_at": _I64, "executed_at": _I64, "at": _I64, "started_at": _I64,
    "ended_at": _I64, "updated_at": _I64, "shelved_until": _I64, "version": _U64,
}


def frame_columns(frame: ReadingFrame, units: Mapping[str, str]
                  ) -> tuple[list[list[Any]], list[str]]:
    """The frame as readings columns (READINGS_COLUMNS order) and the unknown tags it named.

    ``units`` maps every known tag to its unit; readings of other tags are left out.
    """
    n = len(frame)
    lo, hi = _I64
    if not all(lo <= t <= hi for t in (min(frame.ts), max(frame.ts))):
        raise ContractError("out-of-range", "a ts does not fit DateTime64 (Unix ms, Int64)")
    if not (_U64[0] <= frame.epoch <= _U64[1] and frame.last_seq <= _U64[1]):
        raise ContractError("out-of-range", f"epoch {frame.epoch} or seq does not fit UInt64")
    _check_utf8("source", frame.source)
    # the optional columns are checked only when the frame has them (most frames do not)
    if frame.server_ts:
        if any(t is not None and not lo <= t <= hi for t in frame.server_ts):
            raise ContractError("out-of-range", "a server_ts does not fit DateTime64 (Unix ms)")
        server_ts: list[Any] = frame.server_ts
    else:
        server_ts = [None] * n
    if frame.status:
        status = [s or "" for s in frame.status]
        for entry in status:
            if entry:
                _check_utf8("status", entry)
    else:
        status = [""] * n
    if frame.text:
        text: list[Any] = frame.text
        for entry in text:
            if entry:
                _check_utf8("text", entry)
    else:
        text = [None] * n
    head: list[list[Any]] = [frame.tag, frame.ts, frame.value, frame.quality, [frame.source] * n,
                             [frame.epoch] * n, list(range(frame.seq, frame.seq + n)),
                             server_ts, status, text]
    try:
        return [*head, list(map(units.__getitem__, frame.tag))], []
    except KeyError:  # a tag not in the catalog: leave its readings out
        unit = [units.get(t) for t in frame.tag]
    columns: list[list[Any]] = [*head, unit]
    keep = [i for i, u in enumerate(unit) if u is not None]
    unknown = [t for t, u in zip(frame.tag, unit, strict=True) if u is None]
    return [[col[i] for i in keep] for col in columns], unknown


def event_columns(event: Any) -> list[list[Any]]:
    """One event as one-row columns, in field order (the DDL's column order)."""
    cols = []
    for f in fields(event):
        value = getattr(event, f.name)
        bounds = _INT_RANGES.get(f.name)
        if bounds and value is not None and not bounds[0] <= value <= bounds[1]:
            raise ContractError("out-of-range", f"{f.name}={value} does not fit its column")
        if isinstance(value, str):
            _check_utf8(f.name, value)
        elif isinstance(value, int) and not bounds:  # a JSON integer for a Float64 column
            try:
                float(value)
            except OverflowError as exc:
                raise ContractError("out-of-range",
                                    f"{f.name} is too large for a Float64") from exc
        cols.append([value])
    return cols


TWIN_COLUMNS = ("machine", "site", "area", "line", "name", "state", "state_since", "updated",
                "tag_values", "alarms_active", "worst_severity", "last_command_status", "oee",
                "kwh", "doc")


def twin_columns(payload: bytes | None) -> list[list[Any]]:
    """A twin record as one row of the ``twin`` table (TWIN_COLUMNS order): the columns
    analysts filter on, and the whole record as JSON in ``doc``."""
    rec = TwinRecord.decode(payload)
    for name in ("state_since", "updated"):
        if not _I64[0] <= getattr(rec, name) <= _I64[1]:
            raise ContractError("out-of-range", f"{name} does not fit DateTime64 (Unix ms)")
    doc = rec.encode().decode()
    _check_utf8("twin record", doc)
    worst = rec.alarms[0].severity if rec.alarms else ""  # sorted: the most severe first
    row = [rec.machine, rec.site, rec.area, rec.line, rec.name, rec.state, rec.state_since,
           rec.updated, {k: v.value for k, v in rec.tags.items()}, min(len(rec.alarms), 65535),
           worst, rec.last_command.status if rec.last_command else "",
           rec.oee.oee if rec.oee else None, rec.energy.kwh if rec.energy else None, doc]
    return [[v] for v in row]


def _check_utf8(name: str, value: str) -> None:
    """JSON may carry lone surrogates ("\\ud800"); they cannot be written as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ContractError("bad-field", f"{name} is not valid Unicode ({exc.reason})") from exc
