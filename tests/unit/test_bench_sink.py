"""The sink benchmark's JSON: figures side by side, and the ratio between them."""

from __future__ import annotations

from millstream.bench import BENCHMARKS
from millstream.bench.sink import shape_result


def test_result_shape_and_ratio() -> None:
    r = shape_result(1000, sink_s=2.0, raw_s=1.0, benchmark="sink")
    assert r == {"rows": 1000, "sink_rows_per_s": 500, "raw_insert_rows_per_s": 1000,
                 "ratio": 0.5, "benchmark": "sink"}
    assert shape_result(10, sink_s=1.0, raw_s=0.0)["ratio"] is None
    assert "sink" in BENCHMARKS
