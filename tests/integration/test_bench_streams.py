"""``millstream bench streams --json`` at a small size on the session's real Kafka.

Every run of the benchmark happens (the ceiling, the streams worker, Quix Streams fed
both ways in its own virtualenv, the naive Faust table, the worker exactly-once), and the
last stdout line carries the issue's figures. The Quix virtualenv is created on first use
and kept in the cache directory: about a minute the first time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TAGS = 1000
READINGS = 40_000  # 4 s of the plant: the worker closes two 1 s windows per tag


def test_bench_streams_runs_every_contender_and_prints_the_figures(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MILLSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "MILLSTREAM_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "millstream.cli", "bench", "streams", "--json",
         "--readings", str(READINGS), "--tags", str(TAGS), "--peer-readings", "15000",
         "--seconds", "20"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert (r["benchmark"], r["readings"], r["tags"], r["peer_readings"]) == (
        "streams", READINGS, TAGS, 15_000)
    for key in ("millstream_per_s", "baseline_per_s", "quix_per_s", "naive_faust_per_s",
                "quix_per_reading_per_s", "quix_expand_per_s"):
        assert isinstance(r[key], int) and r[key] > 0, (key, r["runs"], r["notes"])
    assert r["quix_per_s"] == max(r["quix_per_reading_per_s"], r["quix_expand_per_s"])
    assert r["ratio_vs_baseline"] == pytest.approx(
        r["millstream_per_s"] / r["baseline_per_s"], abs=0.01)
    assert r["ratio_vs_quix"] == pytest.approx(r["millstream_per_s"] / r["quix_per_s"],
                                               abs=0.01)
    assert 0 < r["worker_peak_rss_mb"] < 4096
    assert isinstance(r["millstream_eos_per_s"], int) and r["millstream_eos_per_s"] > 0
    # the worker did the real job on the real data: every reading, none late or dead,
    # and the two 1 s windows of every tag that its watermark closed
    counters = r["runs"]["millstream"]["processor"]
    assert (counters["readings"], counters["late"], counters["deadletters"],
            counters["duplicates"]) == (READINGS, 0, 0, 0)
    assert counters["aggregates"] == 2 * TAGS
    assert r["runs"]["quix_per_reading"]["windows"] > 0  # 1.5 s of data: Quix closed some
    assert "millstream bench:" in out.stderr  # progress on stderr, the result on stdout
