"""``millstream bench spool`` at a small size against the real Kafka: well-formed figures."""

from __future__ import annotations

import argparse
import json

import pytest

from millstream.bench import run_benchmark
from millstream.settings import Settings

pytestmark = pytest.mark.integration


def test_bench_spool_reports_write_and_replay_rates(kafka_bootstrap: str) -> None:
    args = argparse.Namespace(json=True, readings=20_000)
    result = json.loads(json.dumps(run_benchmark(
        "spool", Settings(kafka_bootstrap=kafka_bootstrap), args)))
    assert result["benchmark"] == "spool" and result["readings"] == 20_000
    rates = [result["direct_produce_readings_per_s"], result["spooled_publish_readings_per_s"],
             result["replay_readings_per_s"], *result["spool_write_readings_per_s"].values()]
    assert all(isinstance(r, int) and r > 0 for r in rates), result
    assert result["replay_vs_direct_produce"] == pytest.approx(
        result["replay_readings_per_s"] / result["direct_produce_readings_per_s"], abs=0.01)
    assert result["replay_vs_live_target"] == pytest.approx(
        result["replay_readings_per_s"] / 100_000, abs=0.01)
    assert 20 < result["bytes_per_reading_on_disk"] < 500
    assert result["recovery_scan_s"] >= 0 and result["fsync_rounds_in_write"] >= 1
