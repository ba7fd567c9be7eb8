"""The shipped plant with a fixed SPC section, so SPC tests do not move when the plant's
own characteristics are tuned."""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml

from schemas.catalog import DEFAULT_CATALOG, Catalog

SPC: dict[str, Any] = {
    "min_capability_points": 30,
    "characteristics": [
        {"tag": "cnc-01/cycle_time", "chart": "individuals", "baseline_points": 50,
         "rules": ["western_electric", "nelson", "range"], "usl": 38},
        {"tag": "press-01/cycle_time", "chart": "xbar_r", "subgroup_size": 5,
         "baseline_points": 25, "rules": ["western_electric"], "lsl": 5.0, "usl": 7.5},
    ],
}


def spc_doc(**changes: Any) -> dict[str, Any]:
    """The plant's catalog document with :data:`SPC`; ``changes`` update the first
    characteristic."""
    doc = yaml.safe_load(DEFAULT_CATALOG.read_text())
    spc = yaml.safe_load(yaml.safe_dump(SPC))
    spc["characteristics"][0].update(changes)
    doc["spc"] = spc
    return doc


@cache
def spc_catalog() -> Catalog:
    return Catalog.model_validate(spc_doc())
