"""One OPC-UA notification -> one reading: timestamps, quality, status name, value (pure).

Kept free of I/O so every bad input can be tested without a server. A value the platform
cannot carry (a string on a numeric tag, a structure, an array, NaN or Inf) becomes a
BAD reading with a null value and the reason in ``status``; it never raises.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from asyncua import ua
from asyncua.ua import status_codes

from schemas.readings import Quality

__all__ = ["Converted", "convert", "quality_of", "status_name", "to_unix_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class Converted(NamedTuple):
    """What :meth:`connectors.base.Source.emit` takes for one notification."""

    ts: int  # source timestamp (else server timestamp, else when received), Unix ms
    value: float | None
    quality: Quality
    server_ts: int | None = None
    status: str | None = None  # the status code's name when not plain Good, or a reason
    text: str | None = None  # a text tag's value


def to_unix_ms(dt: datetime) -> int:
    """A datetime as Unix milliseconds; naive datetimes are UTC (as OPC UA's are)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def _code(status: ua.StatusCode | int | None) -> int:
    return 0 if status is None else int(status) if isinstance(status, int) else int(status.value)


def quality_of(status: ua.StatusCode | int | None) -> Quality:
    """OPC UA severity (the status code's top two bits): Good, Uncertain or Bad."""
    severity = (_code(status) >> 30) & 0b11
    return Quality.GOOD if severity == 0 else Quality.UNCERTAIN if severity == 1 else Quality.BAD


def status_name(status: ua.StatusCode | int | None) -> str | None:
    """``BadNodeIdUnknown`` for a status that is not plain Good (None for Good); info bits
    (overflow, limits) are appended in hex, an unknown code is given in hex."""
    code = _code(status)
    if code == 0:
        return None
    main, info = code & 0xFFFF0000, code & 0xFFFF
    name = status_codes.code_to_name_doc.get(main, (f"0x{main:08X}", ""))[0]
    return f"{name}+0x{info:04X}" if info else name


def _describe(value: Any) -> str:
    """What a value that is not a number is, for a reading's status."""
    if isinstance(value, list | tuple):
        return f"an array of {len(value)}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes):
        return "a byte string"
    if isinstance(value, ua.ExtensionObject):
        return f"an undecoded structure ({value.TypeId.to_string()})"
    return f"a {type(value).__name__}"


def convert(value: Any, dv: ua.DataValue | None, received_ms: int, *,
            text: bool = False) -> Converted:
    """The reading of one notification. Booleans are 1.0/0.0; a text tag's value goes in
    ``text``; anything unusable is BAD with a null value and a ``status`` that says why."""
    ts, server_ts, code = received_ms, None, 0
    if dv is not None:
        if dv.ServerTimestamp is not None:
            server_ts = to_unix_ms(dv.ServerTimestamp)
        stamp = dv.SourceTimestamp or dv.ServerTimestamp
        if stamp is not None:
            ts = to_unix_ms(stamp)
        code = _code(dv.StatusCode)
    quality, status = quality_of(code), status_name(code)
    if value is None:
        return Converted(ts, None, Quality.BAD, server_ts, status or "no value")
    if text:
        if isinstance(value, ua.LocalizedText):
            value = value.Text
        if isinstance(value, str):
            return Converted(ts, None, quality, server_ts, status, value)
        return Converted(ts, None, Quality.BAD, server_ts,
                         _with(status, f"not text: {_describe(value)} on a text tag"))
    if isinstance(value, bool):
        return Converted(ts, 1.0 if value else 0.0, quality, server_ts, status)
    if isinstance(value, int | float):
        number = float(value)
        if math.isfinite(number):
            return Converted(ts, number, quality, server_ts, status)
        return Converted(ts, None, Quality.BAD, server_ts, _with(status, f"not finite: {number}"))
    return Converted(ts, None, Quality.BAD, server_ts,
                     _with(status, f"not a number: {_describe(value)} on a numeric tag"))


def _with(status: str | None, reason: str) -> str:
    return reason if status is None else f"{status}; {reason}"
