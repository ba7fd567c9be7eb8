"""The late topic: readings that arrived after a window they belong to had closed.

One message on ``millstream.late`` holds the late readings of one input frame, as
parallel arrays like a readings frame, with the watermark they missed and the reason::

    {"schema": "millstream.late.v1", "source": "opcua-sim", "epoch": 1763760000123,
     "partition": 0, "offset": 41, "watermark": 1763760004000, "lateness_ms": 1000,
     "reason": "...", "tag": [...], "ts": [...], "value": [...], "quality": [...],
     "seq": [...], "missed_ms": [[1000], [1000, 60000]]}

``missed_ms[i]`` lists the window sizes whose window of reading ``i`` had closed; the
reading still counts in its windows of the other sizes. The reading itself is also in
the readings table: this topic says which aggregates do not include it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from schemas.exceptions import ContractError

__all__ = ["SCHEMA", "LateReadings"]

SCHEMA = "millstream.late.v1"


@dataclass(frozen=True, slots=True)
class LateReadings:
    source: str
    epoch: int
    partition: int  # where the frame was read
    offset: int
    watermark: int  # Unix ms: windows ending at or before it had closed
    lateness_ms: int
    reason: str
    tag: list[str]
    ts: list[int]
    value: list[float | None]
    quality: list[int]
    seq: list[int]
    missed_ms: list[list[int]]

    def __len__(self) -> int:
        return len(self.tag)

    def key(self) -> bytes:
        return self.source.encode()

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def decode(cls, payload: bytes | str) -> LateReadings:
        """For consumers and tests; trusts field types (the worker writes this topic)."""
        try:
            doc = json.loads(payload)
            if doc.pop("schema", None) != SCHEMA:
                raise ContractError("wrong-schema", f"not a {SCHEMA} message")
            return cls(**doc)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ContractError("bad-field", f"not a {SCHEMA} message ({exc})") from exc
