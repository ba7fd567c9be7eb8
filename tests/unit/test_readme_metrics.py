"""The README's metrics table lists exactly the metrics the stages serve (schemas/metrics.py)."""

from __future__ import annotations

from pathlib import Path

from schemas.metrics import METRICS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metrics_table_matches_the_catalog() -> None:
    rows = {}
    for line in README.read_text().splitlines():
        if line.startswith("| `millstream_"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1:4]
    assert set(rows) == {m.name for m in METRICS}, "update the README's metrics table"
    for m in METRICS:
        kind, labels, stages = rows[m.name]
        assert kind == m.kind, m.name
        assert labels == ", ".join(f"`{label}`" for label in m.labels), m.name
        assert stages == ", ".join(m.stages), m.name
