"""``millstream bench latency`` end to end at a small size, on the session's real Kafka."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from millstream.bench import BENCHMARKS, latency
from millstream.cli import build_parser
from millstream.settings import Settings

pytestmark = pytest.mark.integration

FIRST = ["changes", "p50_ms", "p99_ms", "max_ms", "anomaly_p50_ms", "anomaly_p99_ms",
         "background_per_s"]


def _left_running() -> list[str]:
    """Command lines of processes the benchmark starts that are still running."""
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "_latency_sim" in cmd or "bench-latency" in cmd or "connect fast" in cmd:
            alive.append(cmd)
    return alive


def test_the_command_is_registered() -> None:
    assert "latency" in BENCHMARKS
    args = build_parser().parse_args(["bench", "latency", "--json", "--changes", "7"])
    assert (args.name, args.changes, args.json) == ("latency", 7, True)


@pytest.mark.timeout(300)
def test_small_latency_run_is_well_formed_and_every_change_gets_one_result(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, data_dir=tmp_path)
    out = latency.run(settings, 6, machines=3, background_per_s=2000)  # default warm-up
    json.loads(json.dumps(out))
    assert list(out)[1:8] == FIRST
    assert out["changes"] == 6 and out["results"] == 6 and out["missed"] == 0
    assert out["result_status"] == {"applied": 6}  # written and read back, none refused
    # one per change (and per warm-up change); a change still held above the bound when
    # the bench's 0.5 s cooldown ends fires once more at the worker's tick, by design (a
    # loaded machine holds a forced value that long): never more than one extra per change
    assert 6 + 2 <= out["seen"]["commands"] <= 2 * (6 + 2), out["seen"]
    assert 0 < out["min_ms"] <= out["p50_ms"] <= out["p99_ms"] <= out["max_ms"] < 10_000
    # the fast path answers before the window that holds the change has even closed
    assert out["anomalies_matched"] >= 1
    assert out["p50_ms"] < out["anomaly_p50_ms"] <= out["anomaly_p99_ms"]
    assert all(v is not None for v in out["hops_p50_ms"].values())
    assert 500 < out["background_per_s"] < 5000  # 2 machines x 118 tags x 10 Hz, nominal
    assert out["bulk_tags"] == 236 and out["target_p99_ms"] == 50.0
    assert set(out["cpu_share"]) == {"simulator", "worker", "executor", "connect-fast",
                                     "connect-bulk"}
    assert _left_running() == []
