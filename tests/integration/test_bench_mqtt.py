"""``millstream bench mqtt`` at a small size: it runs, loses nothing, and reports both."""

from __future__ import annotations

import argparse

import pytest

from millstream.bench import run_benchmark
from millstream.settings import Settings

pytestmark = pytest.mark.integration


def test_bench_mqtt_small() -> None:
    result = run_benchmark("mqtt", Settings(), argparse.Namespace(json=True, readings=20_000))
    assert result["readings_sent"] == 20_000 and result["lost"] == 0, result
    assert result["connector"]["dead_lettered"] == 0 and result["connector"]["seq_gaps"] == 0
    assert result["mqtt_readings_per_s"] > 0
    assert result["baseline_bare_paho_decode_readings_per_s"] > 0
    assert result["bare"]["readings"] == 20_000
