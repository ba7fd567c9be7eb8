"""The sink's rows for the spc topic: each kind into its table, bad messages refused
with the reason (the sink dead-letters them)."""

from __future__ import annotations

import json

import pytest

from schemas.exceptions import ContractError
from schemas.spc_events import SpcCapability, SpcViolation, spc_id
from sinks.spc_rows import SPC_COLUMNS, spc_rows

V = SpcViolation(violation_id=spc_id("t", "nelson-1", 5), tag="a/b/c/d/m/t", rule="nelson-1",
                 rule_set="nelson", description="1 point beyond 3 sigma", message="m",
                 chart="individuals", statistic="value", ts=5, first_ts=5, value=9.0, points=1,
                 centre=1.0, ucl=2.0, lcl=0.0, sigma=0.3, detected_at=6)
C = SpcCapability(capability_id=spc_id("t", 0), tag="a/b/c/d/m/t", shift="day", shift_start=0,
                  shift_end=86_400_000, complete=True, chart="individuals", points=3,
                  mean=1.0, sigma_within=None, sigma_method="MRbar/d2 (d2=1.128)", lsl=None,
                  usl=2.0, cp=None, cpk=None, cpu=None, cpl=None, note="too few points",
                  computed_at=7)


def test_each_kind_goes_to_its_table_in_column_order() -> None:
    for event, table in ((V, "spc_violations"), (C, "spc_capability")):
        rows = spc_rows(event.encode())
        assert rows.table == table
        assert len(rows.columns) == len(SPC_COLUMNS[table])
        assert [c[0] for c in rows.columns] == list(json.loads(event.encode()).values())[1:]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{nope", "not-json"),
    (json.dumps({"schema": "millstream.anomalies.v1"}).encode(), "wrong-schema"),
    (json.dumps({**json.loads(V.encode()), "value": "high"}).encode(), "bad-field"),
    (json.dumps({**json.loads(V.encode()), "points": -1}).encode(), "out-of-range"),
])
def test_bad_messages_are_refused_with_the_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ContractError) as err:
        spc_rows(payload)
    assert err.value.reason == reason
