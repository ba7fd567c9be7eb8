"""Messages of the derived topics: one JSON object per Kafka message.

Each class maps one-to-one onto a topic and onto a JSON Schema in ``schemas/jsonschema/``.
``encode()`` writes the object with its ``schema`` name; ``decode()`` validates field
types and raises :class:`ContractError` naming the first bad field.
"""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from enum import Enum
from typing import Any, ClassVar, Self

from schemas.exceptions import ContractError
from schemas.jsondoc import load_object
from schemas.signing import Signer

__all__ = [
    "Aggregate",
    "Anomaly",
    "Command",
    "CommandResult",
    "CommandStatus",
    "DeadLetter",
    "now_ms",
]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class CommandStatus(str, Enum):
    APPLIED = "applied"  # written and read back equal
    REJECTED = "rejected"  # refused by the safety gateway; nothing was written
    FAILED = "failed"  # written but not confirmed, or the device did not answer
    DRY_RUN = "dry-run"  # passed every check; not written (dry-run mode)


_NUMBER = (int, float)


class _Event:
    """Shared JSON encode/decode for the event dataclasses below."""

    SCHEMA: ClassVar[str]
    # field name -> accepted Python types; None allowed where listed in _NULLABLE
    _TYPES: ClassVar[dict[str, tuple[type, ...]]]
    _NULLABLE: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        doc = {"schema": self.SCHEMA}
        doc.update(asdict(self))  # type: ignore[call-overload]
        return doc

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def decode(cls, payload: bytes | str | None) -> Self:
        return cls.from_dict(load_object(payload))

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Self:
        if doc.get("schema") != cls.SCHEMA:
            raise ContractError(
                "wrong-schema", f"schema is {doc.get('schema')!r}, want {cls.SCHEMA!r}"
            )
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            value = doc.get(f.name)
            if value is None:
                if f.name not in cls._NULLABLE:
                    raise ContractError("bad-field", f"{f.name} is missing")
            else:
                want = cls._TYPES[f.name]
                if isinstance(value, bool) and bool not in want:
                    raise ContractError("bad-field", f"{f.name} must be {want[0].__name__}")
                if not isinstance(value, want):
                    raise ContractError(
                        "bad-field", f"{f.name}={value!r} must be {want[0].__name__}"
                    )
                if isinstance(value, float) and not math.isfinite(value):
                    raise ContractError("bad-field", f"{f.name} must be finite")
            kwargs[f.name] = value
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Aggregate(_Event):
    """Statistics of one tag over one window [window_start, window_end) of one size.

    The single-message form (``millstream.aggregates.v1``); the worker publishes
    aggregates as columnar frames (:mod:`schemas.aggregates`) and uses this form in process.
    """

    SCHEMA: ClassVar[str] = "millstream.aggregates.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "tag": (str,), "window_start": (int,), "window_end": (int,), "count": (int,),
        "min": _NUMBER, "max": _NUMBER, "mean": _NUMBER, "std": _NUMBER,
        "first": _NUMBER, "last": _NUMBER, "window_ms": (int,), "good_share": _NUMBER,
    }
    # absent in messages written before window sizes and quality shares existed
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"window_ms", "good_share"})

    tag: str
    window_start: int  # Unix ms, inclusive
    window_end: int  # Unix ms, exclusive
    count: int  # readings with a value (GOOD or UNCERTAIN) in the window
    min: float
    max: float
    mean: float
    std: float  # population standard deviation
    first: float  # value of the earliest reading by source timestamp
    last: float  # value of the latest reading by source timestamp
    window_ms: int | None = None  # window size; None: window_end - window_start
    good_share: float | None = None  # GOOD readings / all readings (bad ones too); None: unknown

    def __post_init__(self) -> None:
        if self.window_ms is None:
            object.__setattr__(self, "window_ms", self.window_end - self.window_start)

    def key(self) -> bytes:
        return self.tag.encode()


@dataclass(frozen=True, slots=True)
class Anomaly(_Event):
    """One tag's window (``scope`` "tag") or one machine's window (``scope`` "asset") that
    a detector scored above its threshold, with what drove it, ranked.

    ``scope``, ``asset``, ``tags`` and ``drivers`` are absent in messages written before
    detectors per machine existed; they decode as a tag anomaly of an unknown machine.
    """

    SCHEMA: ClassVar[str] = "millstream.anomalies.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "anomaly_id": (str,), "tag": (str,), "window_start": (int,), "window_end": (int,),
        "feature": (str,), "value": _NUMBER, "score": _NUMBER, "threshold": _NUMBER,
        "detector": (str,), "detected_at": (int,), "scope": (str,), "asset": (str,),
        "tags": (list,), "drivers": (list,),
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"scope", "asset", "tags", "drivers"})

    anomaly_id: str
    tag: str  # the tag; for scope "asset" the machine's ISA-95 path
    window_start: int
    window_end: int
    feature: str  # the window statistic that scored highest, e.g. "mean" or "std"
    value: float  # that statistic's value
    score: float
    threshold: float
    detector: str  # e.g. "bank:level_shift", "pca", "river.anomaly.StandardAbsoluteDeviation"
    detected_at: int  # Unix ms, processing time
    scope: str | None = None  # "tag" or "asset"; None (old messages): "tag"
    asset: str | None = None  # the machine's ISA-95 path; "" when unknown
    tags: list[str] | None = None  # the tags that drove it, highest contribution first
    # (what, contribution) ranked: "mean:level_shift" for a tag, "spindle_temp:mean" for
    # a machine; a contribution is a score (threshold units) or a share of the statistic
    drivers: list[tuple[str, float]] | None = None

    def __post_init__(self) -> None:
        if self.scope is None:
            object.__setattr__(self, "scope", "tag")
        if self.scope not in ("tag", "asset"):
            raise ContractError("bad-field", f"scope={self.scope!r} must be tag or asset")
        if self.asset is None:
            object.__setattr__(self, "asset", "")
        tags = self.tags if self.tags or self.scope == "asset" else [self.tag]
        object.__setattr__(self, "tags", _strings("tags", tags))
        object.__setattr__(self, "drivers", _pairs("drivers", self.drivers))

    def key(self) -> bytes:
        return self.tag.encode()


def _strings(name: str, value: Any) -> list[str]:
    """A list of strings (ContractError naming the field otherwise)."""
    items = list(value or [])
    if not all(isinstance(v, str) for v in items):
        raise ContractError("bad-field", f"{name} must be a list of strings")
    return items


def _pairs(name: str, value: Any) -> list[tuple[str, float]]:
    """``[[name, number], ...]`` as a list of (str, float) tuples."""
    out: list[tuple[str, float]] = []
    for item in value or []:
        if (not isinstance(item, list | tuple) or len(item) != 2 or not isinstance(item[0], str)
                or isinstance(item[1], bool) or not isinstance(item[1], _NUMBER)
                or not math.isfinite(item[1])):
            raise ContractError("bad-field", f"{name} must be a list of [name, finite number]")
        out.append((item[0], float(item[1])))
    return out


@dataclass(frozen=True, slots=True)
class Command(_Event):
    """A request to change one writable setpoint, decided by a rule."""

    SCHEMA: ClassVar[str] = "millstream.commands.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "command_id": (str,), "rule": (str,), "machine": (str,), "setpoint": (str,),
        "value": _NUMBER, "reason": (str,), "issued_at": (int,), "expires_at": (int,),
        "issuer": (str,), "dry_run": (bool,), "signature": (str,),
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"issuer", "dry_run", "signature"})

    command_id: str
    rule: str  # name of the rule in the catalog that decided it
    machine: str  # ISA-95 path of the machine
    setpoint: str  # ISA-95 tag path of the writable setpoint
    value: float
    reason: str  # human-readable: what was seen
    issued_at: int  # Unix ms
    expires_at: int  # Unix ms; the executor refuses a command it receives later than this
    # who signed it (a stage such as "streams", or an operator), and the Ed25519 signature
    # over the canonical JSON (schemas.signing); the executor refuses unsigned commands
    issuer: str | None = None
    dry_run: bool | None = None  # check everything but do not write
    signature: str | None = None

    def key(self) -> bytes:
        return self.machine.encode()

    def signed_by(self, signer: Signer) -> Command:
        """This command with ``issuer`` and ``signature`` set by ``signer``."""
        doc = signer.sign(self.to_dict())
        doc.pop("schema")
        return Command(**doc)


@dataclass(frozen=True, slots=True)
class CommandResult(_Event):
    """What the executor did with one command."""

    SCHEMA: ClassVar[str] = "millstream.command-results.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "command_id": (str,), "setpoint": (str,), "requested": _NUMBER,
        "readback": _NUMBER, "status": (str,), "detail": (str,), "executed_at": (int,),
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"readback"})

    command_id: str
    setpoint: str
    requested: float
    readback: float | None  # value read back from the device after the write
    status: str  # a CommandStatus value
    detail: str
    executed_at: int  # Unix ms

    def key(self) -> bytes:
        return self.command_id.encode()


@dataclass(frozen=True, slots=True)
class DeadLetter(_Event):
    """A message a stage could not process, kept with the reason."""

    SCHEMA: ClassVar[str] = "millstream.deadletter.v1"
    _TYPES: ClassVar[dict[str, tuple[type, ...]]] = {
        "stage": (str,), "reason": (str,), "detail": (str,), "topic": (str,),
        "partition": (int,), "offset": (int,), "key": (str,), "payload": (str,),
        "payload_encoding": (str,), "at": (int,),
    }
    _NULLABLE: ClassVar[frozenset[str]] = frozenset({"key"})

    stage: str  # which process: "streams", "sink", "executor", ...
    reason: str  # short and stable, e.g. "not-json", "unknown-tag"
    detail: str
    topic: str
    partition: int
    offset: int
    key: str | None
    payload: str  # the original message value, as text ("utf-8") or base64 ("base64")
    payload_encoding: str
    at: int

    @classmethod
    def of(
        cls,
        *,
        stage: str,
        reason: str,
        detail: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
    ) -> DeadLetter:
        raw = value or b""
        try:
            payload, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            payload, encoding = base64.b64encode(raw).decode(), "base64"
        return cls(
            stage=stage,
            reason=reason,
            detail=detail,
            topic=topic,
            partition=partition,
            offset=offset,
            key=key.decode("utf-8", "replace") if key is not None else None,
            payload=payload,
            payload_encoding=encoding,
            at=now_ms(),
        )

    def key_bytes(self) -> bytes:
        return self.stage.encode()
