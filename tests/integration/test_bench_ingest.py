"""``millstream bench ingest`` end to end at a small size, on the session's real Kafka."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from millstream.bench import ingest
from millstream.settings import Settings

pytestmark = pytest.mark.integration


def _helpers_alive() -> list[str]:
    """Command lines of processes the benchmark starts that are still running."""
    alive = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "millstream.bench._" in cmd or "connect bench-" in cmd:
            alive.append(cmd)
    return alive


@pytest.mark.timeout(180)
def test_small_ingest_run_is_well_formed_and_loses_nothing(kafka_bootstrap: str,
                                                           tmp_path: Path) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap, data_dir=tmp_path)
    out = ingest.run(settings, tags=150, seconds=4, modbus_seconds=3, modbus_machines=2,
                     mqtt_readings=20_000)
    json.dumps(out)
    assert list(out)[1:8] == ["opcua_tags", "opcua_readings_per_s", "opcua_lost",
                              "opcua_vs_bare", "modbus_registers_per_s",
                              "modbus_per_register_baseline_per_s", "modbus_speedup"]
    assert out["opcua_tags"] == 150
    assert out["opcua_server_changes"] == 150 * 4
    assert out["opcua_lost"] == 0 and out["opcua_readings"] == 600
    assert out["opcua_seq_gaps"] == 0 and out["opcua_duplicates"] == 0
    assert out["opcua_bare_lost"] == 0
    # 150 changes a second through both; neither can be far off that
    assert 100 < out["opcua_readings_per_s"] <= 160
    assert 100 < out["opcua_bare_per_s"] <= 160
    assert 0.7 < out["opcua_vs_bare"] < 1.3
    assert out["connector_peak_rss_mb"] > 10
    assert out["mqtt_lost"] == 0 and out["mqtt_readings_per_s"] > 0
    assert out["modbus_registers_per_s"] > out["modbus_per_register_baseline_per_s"] > 0
    assert out["modbus_speedup"] > 1
    assert out["modbus_bad_readings"] == 0 and out["modbus_seq_gaps"] == 0
    assert set(out["targets_met"]) == set(ingest.TARGETS)
    assert _helpers_alive() == []
