"""The ``<prefix>.spc`` topic: control chart violations and process capability per shift.

One topic, two kinds of message, told apart by ``schema``:
``millstream.spc-violations.v1`` (:class:`SpcViolation`: a Western Electric or Nelson rule
that fired on a characteristic's chart) and ``millstream.spc-capability.v1``
(:class:`SpcCapability`: Cp/Cpk of one characteristic in one shift). Both are keyed by the
tag path. Ids are derived from what they describe (tag, rule and point; tag and shift), so
a record sent again after a worker restart collapses in ClickHouse.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from schemas.events import _Event
from schemas.exceptions import ContractError
from schemas.jsondoc import load_object

__all__ = ["SpcCapability", "SpcViolation", "decode_spc", "spc_id"]

_NUMBER = (int, float)


def spc_id(*parts: object) -> str:
    """A stable id from the parts (hex, 24 characters)."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class SpcViolation(_Event):
    """A run rule that fired at one point of a characteristic's chart (once per run: a
    rule that stays violated at the following points does not fire again)."""

    SCHEMA: ClassVar[str] = "millstream.spc-violations.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "violation_id": (str,), "tag": (str,), "rule": (str,), "rule_set": (str,),
        "description": (str,), "message": (str,), "chart": (str,), "statistic": (str,),
        "ts": (int,), "first_ts": (int,), "value": _NUMBER, "points": (int,),
        "centre": _NUMBER, "ucl": _NUMBER, "lcl": _NUMBER, "sigma": _NUMBER,
        "detected_at": (int,),
    }

    violation_id: str
    tag: str  # ISA-95 path of the characteristic's tag
    rule: str  # e.g. "nelson-3"
    rule_set: str  # "western_electric", "nelson" or "range" (range-1, the R or MR chart)
    description: str  # e.g. "6 points in a row steadily increasing or decreasing"
    message: str  # a sentence for a person: rule, tag, point, limits
    chart: str  # "individuals" or "xbar_r"
    statistic: str  # "value", "subgroup_mean", or "moving_range"/"range" (range-1)
    ts: int  # Unix ms (source time) of the point that fired it (a subgroup: its last reading)
    first_ts: int  # Unix ms of the first point of the pattern
    value: float  # the point
    points: int  # how many points the pattern spans
    centre: float
    ucl: float
    lcl: float
    sigma: float  # sigma of one plotted point (the zones are 1, 2, 3 of it)
    detected_at: int  # Unix ms, processing time

    def key(self) -> bytes:
        return self.tag.encode()


@dataclass(frozen=True, slots=True)
class SpcCapability(_Event):
    """Cp/Cpk of one characteristic in one shift, from the shift's own points. Indices that
    are undefined (one-sided specification, too few points, no variation) are null and
    ``note`` says why."""

    SCHEMA: ClassVar[str] = "millstream.spc-capability.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "capability_id": (str,), "tag": (str,), "shift": (str,), "shift_start": (int,),
        "shift_end": (int,), "complete": (bool,), "chart": (str,), "points": (int,),
        "mean": _NUMBER, "sigma_within": _NUMBER, "sigma_method": (str,), "lsl": _NUMBER,
        "usl": _NUMBER, "cp": _NUMBER, "cpk": _NUMBER, "cpu": _NUMBER, "cpl": _NUMBER,
        "note": (str,), "computed_at": (int,),
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset(
        {"mean", "sigma_within", "lsl", "usl", "cp", "cpk", "cpu", "cpl"})

    capability_id: str
    tag: str
    shift: str  # the shift's name in the catalog
    shift_start: int  # Unix ms
    shift_end: int  # Unix ms, exclusive
    complete: bool  # false: sent before the shift ended (the worker stopped), so far only
    chart: str
    points: int  # values (individuals) or subgroups (xbar_r) in the shift
    mean: float | None
    sigma_within: float | None
    sigma_method: str  # e.g. "MRbar/d2 (d2=1.128)"
    lsl: float | None
    usl: float | None
    cp: float | None
    cpk: float | None
    cpu: float | None
    cpl: float | None
    note: str  # why an index is null or one-sided; "" when Cp and Cpk are both given
    computed_at: int  # Unix ms, processing time

    def key(self) -> bytes:
        return self.tag.encode()


def decode_spc(payload: bytes | str | None) -> SpcViolation | SpcCapability:
    """Either kind of message of the spc topic; ContractError for anything else."""
    doc: dict[str, Any] = load_object(payload)
    kind = doc.get("schema")
    if kind == SpcViolation.SCHEMA:
        return SpcViolation.from_dict(doc)
    if kind == SpcCapability.SCHEMA:
        return SpcCapability.from_dict(doc)
    raise ContractError("wrong-schema", f"schema is {kind!r}, want {SpcViolation.SCHEMA!r} "
                                        f"or {SpcCapability.SCHEMA!r}")
