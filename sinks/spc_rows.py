"""The spc topic as ClickHouse rows: violations into ``spc_violations``, capability
records into ``spc_capability`` (migration 0011), told apart by their ``schema``."""

from __future__ import annotations

from dataclasses import fields

from schemas.exceptions import ContractError
from schemas.spc_events import SpcCapability, SpcViolation, decode_spc
from sinks.batch import Rows
from sinks.rows import event_columns

__all__ = ["SPC_COLUMNS", "SPC_TOPIC_TABLE", "spc_rows"]

SPC_TOPIC_TABLE = "spc"  # the topic's name in the sink's topic -> table map: two tables
SPC_COLUMNS: dict[str, list[str]] = {
    "spc_violations": [f.name for f in fields(SpcViolation)],
    "spc_capability": [f.name for f in fields(SpcCapability)],
}


def spc_rows(payload: bytes | str | None) -> Rows:
    """One message of the spc topic as one row of its table; ContractError if it is
    neither kind or a count does not fit UInt32."""
    event = decode_spc(payload)
    if not 0 <= event.points < 2**32:
        raise ContractError("out-of-range", f"points={event.points} does not fit UInt32")
    table = "spc_violations" if isinstance(event, SpcViolation) else "spc_capability"
    return Rows(table, event_columns(event))
