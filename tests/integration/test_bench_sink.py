"""``millstream bench sink --json`` on a small workload: its last stdout line is the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_sink_prints_its_figures_last(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MILLSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "MILLSTREAM_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "millstream.cli", "bench", "sink", "--json",
                          "--readings", "20000"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result) >= {"rows", "sink_rows_per_s", "raw_insert_rows_per_s", "ratio"}
    assert result["rows"] == 20000
    assert result["sink_rows_per_s"] > 0 and result["raw_insert_rows_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["sink_rows_per_s"] / result["raw_insert_rows_per_s"], rel=0.01)
    # the raw insert that names its batches with dedup tokens, as the sink does
    assert result["raw_insert_tokens_rows_per_s"] > 0
    assert result["ratio_vs_tokens"] == pytest.approx(
        result["sink_rows_per_s"] / result["raw_insert_tokens_rows_per_s"], rel=0.01)
