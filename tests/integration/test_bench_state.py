"""``millstream bench state`` runs on a small workload and reports well-formed figures."""

from __future__ import annotations

import pytest

from millstream.bench.state import run
from millstream.settings import Settings

pytestmark = pytest.mark.integration


def test_bench_state_reports_each_guarantee_side_by_side(kafka_bootstrap: str) -> None:
    result = run(Settings(kafka_bootstrap=kafka_bootstrap), tags=60, readings=60_000)
    assert result["benchmark"] == "state" and result["readings"] >= 60_000
    for key in ("off_per_s", "at_least_once_per_s", "exactly_once_per_s"):
        assert isinstance(result[key], int) and result[key] > 0, (key, result)
    assert result["ratio_at_least_once_vs_off"] == pytest.approx(
        result["at_least_once_per_s"] / result["off_per_s"], abs=1e-3)
    assert result["checkpoint_bytes"] > 0 and result["checkpoint_ms"] > 0
