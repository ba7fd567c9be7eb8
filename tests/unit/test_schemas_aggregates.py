"""Aggregate frames, late-reading messages and asset records: the new output contracts."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import pytest

from schemas.aggregates import AGGREGATE_COLUMNS, AggregateFrame, aggregate_columns
from schemas.catalog import Catalog
from schemas.events import Aggregate
from schemas.exceptions import ContractError
from schemas.late import LateReadings
from streams.assets import FEATURES, AssetIndex

CNC = "acme/plant1/machining/line1/cnc-01"


def _schema(topic: str) -> dict[str, Any]:
    text = resources.files("schemas").joinpath(f"jsonschema/{topic}.json").read_text()
    return dict(json.loads(text))


def _frame(n: int = 3, w: int = 1000) -> AggregateFrame:
    return AggregateFrame(
        "opcua-sim", w, [f"{CNC}/t{i}" for i in range(n)], [5000 + i * w for i in range(n)],
        [i + 1 for i in range(n)], [float(i) for i in range(n)], [i + 2.0 for i in range(n)],
        [i + 1.0 for i in range(n)], [0.5] * n, [float(i) for i in range(n)],
        [i + 2.0 for i in range(n)], [1.0] * n)


def test_frame_round_trips_matches_its_schema_and_chunks() -> None:
    f = _frame(5)
    assert AggregateFrame.decode(f.encode()) == f
    jsonschema.validate(json.loads(f.encode()), _schema("millstream.aggregates"))
    parts = f.chunks(2)
    assert [len(p) for p in parts] == [2, 2, 1]
    assert [a for p in parts for a in p.aggregates()] == f.aggregates()


def test_rows_and_columns_agree_with_the_single_message_form() -> None:
    f = _frame(2, w=60_000)
    [a0, a1] = f.aggregates()
    assert (a0.window_end - a0.window_start, a0.window_ms, a1.good_share) == (60_000, 60_000, 1.0)
    cols = f.columns()
    assert [c[1] for c in cols] == [getattr(a1, name) for name in AGGREGATE_COLUMNS]
    assert aggregate_columns(f.encode()) == cols
    # the v1 message of earlier versions still decodes, with its size from its bounds
    old = json.loads(a0.encode())
    del old["window_ms"], old["good_share"]
    jsonschema.validate(old, _schema("millstream.aggregates"))
    v1 = aggregate_columns(json.dumps(old))
    assert v1[AGGREGATE_COLUMNS.index("window_ms")] == [60_000]
    assert v1[AGGREGATE_COLUMNS.index("good_share")] == [None]


@pytest.mark.parametrize(("change", "match"), [
    ({"count": [0, 1, 2]}, "count"),
    ({"mean": [1.0, "x", 2.0]}, "mean"),
    ({"std": [1.0, 2.0]}, "as long as tag"),
    ({"window_ms": 0}, "window_ms"),
    ({"good_share": [1.5, 1.0, 1.0]}, "good_share"),
    ({"window_start": [1, 2, 2**63]}, "window_start"),
    ({"min": [1e400, 0, 0]}, "finite"),
])
def test_decode_names_the_bad_field(change: dict[str, Any], match: str) -> None:
    doc = {**_frame().to_dict(), **change}
    with pytest.raises(ContractError, match=match):
        aggregate_columns(json.dumps(doc))


def test_late_readings_match_their_schema() -> None:
    late = LateReadings("opcua-sim", 1, 0, 41, 9000, 1000, "late: ...", ["a/b"], [10],
                        [None], [2], [7], [[1000, 60_000]])
    doc = json.loads(late.encode())
    jsonschema.validate(doc, _schema("millstream.late"))
    assert LateReadings.decode(late.encode()) == late
    with pytest.raises(ContractError):
        LateReadings.decode(b'{"schema": "millstream.late.v1", "nope": 1}')


def test_asset_record_holds_every_analog_tag_of_the_machine(catalog: Catalog) -> None:
    temp, vib = f"{CNC}/spindle_temp", f"{CNC}/vibration_rms"
    f = AggregateFrame("opcua-sim", 1000, [vib, temp, f"{CNC}/part_count"], [0, 0, 0],
                       [4, 5, 6], [1.0, 60.0, 3.0], [2.0, 70.0, 9.0], [1.5, 65.0, 6.0],
                       [0.1, 2.0, 1.0], [1.0, 61.0, 3.0], [2.0, 69.0, 9.0], [1.0, 0.8, 1.0])
    [rec] = AssetIndex(catalog).records(f)
    analog = [p for p, i in catalog.tags().items()
              if p.startswith(CNC + "/") and i.spec.kind == "analog"]
    assert rec.machine == CNC and list(rec.tags) == analog  # counters are not features
    assert rec.values.shape == (len(analog), len(FEATURES))
    assert rec.feature("mean")[analog.index(temp)] == 65.0
    assert rec.feature("good_share")[analog.index(temp)] == 0.8
    assert rec.feature("max")[analog.index(vib)] == 2.0
    others = [i for i, t in enumerate(analog) if t not in (temp, vib)]
    assert np.isnan(rec.values[others]).all()
    assert rec.vector().shape == (2 * len(analog),)


def test_single_aggregate_defaults_its_window_size() -> None:
    a = Aggregate("t", 1000, 3000, 1, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0)
    assert a.window_ms == 2000 and Aggregate.decode(a.encode()) == a
