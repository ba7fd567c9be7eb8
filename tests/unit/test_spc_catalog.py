"""The catalog's spc section: the shipped plant's characteristics load, and every mistake
is refused with the entry, the value and what to write instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.catalog import DEFAULT_CATALOG, load_catalog
from schemas.exceptions import CatalogError


def test_the_shipped_plant_charts_two_cycle_times() -> None:
    spc = load_catalog().spc
    got = {(c.tag, c.chart, c.n) for c in spc.characteristics}
    assert got == {("cnc-01/cycle_time", "individuals", 1), ("press-01/cycle_time", "xbar_r", 5)}


def _load(tmp_path: Path, spc: dict[str, Any]) -> str:
    doc = yaml.safe_load(DEFAULT_CATALOG.read_text())
    doc["spc"] = spc
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    return str(err.value)


@pytest.mark.parametrize(("entry", "expected"), [
    ({"tag": "cnc-01/cycle_tim"},
     "spc.characteristics[0].tag = 'cnc-01/cycle_tim' is not a tag in the catalog"),
    ({"tag": "mill-9/cycle_time"}, "tags of that name: cnc-01/cycle_time, press-01/cycle_time"),
    ({"tag": "cnc-01/running"}, "is a state tag; a control chart needs a measured value"),
    ({"tag": "cnc-01/cycle_time", "chart": "xbar_r"},
     "chart xbar_r needs subgroup_size 2 to 10, got None; set e.g. subgroup_size: 5"),
    ({"tag": "cnc-01/cycle_time", "chart": "xbar_r", "subgroup_size": 12},
     "needs subgroup_size 2 to 10, got 12"),
    ({"tag": "cnc-01/cycle_time", "subgroup_size": 4},
     "chart individuals plots single values, but subgroup_size is 4; remove subgroup_size"),
    ({"tag": "cnc-01/cycle_time", "lsl": 40, "usl": 30},
     "lsl (40) must be below usl (30); swap them"),
    ({"tag": "cnc-01/cycle_time", "rules": ["shewhart"]},
     "rules[0] = 'shewhart': Input should be 'western_electric', 'nelson' or 'range'"),
    ({"tag": "cnc-01/cycle_time", "chart": "p"},
     "chart = 'p': Input should be 'individuals' or 'xbar_r'"),
    ({"tag": "cnc-01/cycle_time", "baseline_points": 1},
     "baseline_points = 1: Input should be greater than or equal to 2"),
])
def test_a_bad_characteristic_is_named_with_the_fix(tmp_path: Path, entry: dict[str, Any],
                                                    expected: str) -> None:
    text = _load(tmp_path, {"characteristics": [entry]})
    assert expected in text, text
    assert "line " in text  # where in the file


def test_a_tag_charted_twice_and_an_own_shift_calendar_are_refused(tmp_path: Path) -> None:
    one = {"tag": "cnc-01/cycle_time"}
    assert "cnc-01/cycle_time appear more than once; chart each tag once" in _load(
        tmp_path, {"characteristics": [one, one]})
    # capability follows the plant's one calendar (kpis.shifts), not a second one
    assert "spc.shifts" in _load(tmp_path, {"shifts": [{"name": "a", "start": "06:00"}]})
