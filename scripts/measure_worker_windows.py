"""Measure the streams worker's processing at N tags as a function of readings per window.

Not a test: run it by hand, ``.venv/bin/python scripts/measure_worker_windows.py``. It
feeds :class:`streams.processor.FrameProcessor` (decode, every window size, anomaly
scoring, rules) frames of 1000 readings of one source with N tags, each tag sampled at
``--hz`` readings per second, with the shipped plant's windows and detector (or without
its 1 s window: ``--no-1s``). Prints readings and aggregate rows per CPU second (this
process's CPU time, so that other work on the machine changes the figure less than wall
time would) as one JSON line. The README's "Sizing" uses it: at 1 Hz every reading closes
a 1 s window, and the cost per closed window, not per reading, is what a worker spends.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from schemas.catalog import DEFAULT_CATALOG, Catalog, load_catalog  # noqa: E402
from schemas.readings import FrameBuilder, ReadingFrame  # noqa: E402
from streams.processor import FrameProcessor  # noqa: E402

TAGS_PER_MACHINE = 100


def catalog(tags: int, folder: Path, *, drop_1s: bool) -> Catalog:
    """A plant of ``tags`` OPC-UA tags on one source, the shipped windows and detector."""
    shipped = yaml.safe_load(DEFAULT_CATALOG.read_text())
    streams = dict(shipped["streams"])
    if drop_1s:
        streams["windows"] = [w for w in streams["windows"] if w["size_ms"] != 1000]
    machines = [{"name": f"m{m:05d}", "area": "a", "line": "l", "source": "plc",
                 "tags": [{"name": f"t{t:03d}", "node": f"ns=2;s=m{m}.t{t}"}
                          for t in range(TAGS_PER_MACHINE)]}
                for m in range(-(-tags // TAGS_PER_MACHINE))]
    doc: dict[str, Any] = {
        "enterprise": "bench", "site": "sizing",
        "sources": [{"name": "plc", "protocol": "opcua", "endpoint": "opc.tcp://plc:4840"}],
        "machines": machines, "streams": streams, "detectors": shipped["detectors"],
        "alarms": shipped["alarms"]}
    path = folder / "plant.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_catalog(path)


def frames(cat: Catalog, seconds: int, hz: int) -> list[ReadingFrame]:
    """Every tag ``hz`` times a second for ``seconds`` of event time, spread over each step."""
    tags = list(cat.tags())
    rng = np.random.default_rng(1)
    fb = FrameBuilder("plc", epoch=1, max_readings=1000)
    start, step = 1_763_760_000_000, 1000 // hz
    out: list[ReadingFrame] = []
    for s in range(seconds * hz):
        values = rng.normal(50.0, 2.0, len(tags)).tolist()
        for i, tag in enumerate(tags):
            fb.add(tag, start + s * step + i % step, values[i])
            if fb.full:
                out.append(fb.flush())  # type: ignore[arg-type]
    last = fb.flush()
    return out + ([last] if last is not None else [])


def measure(tags: int, seconds: int, hz: int, drop_1s: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cat = catalog(tags, Path(tmp), drop_1s=drop_1s)
    batch = frames(cat, seconds, hz)
    encoded = [(f.encode(), max(f.ts)) for f in batch]
    proc = FrameProcessor(cat)
    rows = 0
    t0 = time.process_time()
    for offset, (payload, now) in enumerate(encoded):
        out = proc.process(b"plc", payload, "readings", 0, offset, now)
        rows += sum(len(a) for a in out.aggregate_frames)
    cpu = time.process_time() - t0
    readings = sum(len(f) for f in batch)
    return {"tags": tags, "hz": hz, "windows_ms": [s.size_ms for s in cat.streams.window_specs()],
            "readings": readings, "cpu_s": round(cpu, 2),
            "readings_per_cpu_s": round(readings / cpu),
            "aggregate_rows_per_cpu_s": round(rows / cpu)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tags", type=int, default=10_000)
    ap.add_argument("--hz", type=int, default=1, help="readings per tag per second")
    ap.add_argument("--seconds", type=int, default=30, help="event time to feed")
    ap.add_argument("--no-1s", action="store_true", help="without the shipped 1 s window")
    args = ap.parse_args()
    print(json.dumps(measure(args.tags, args.seconds, args.hz, args.no_1s)), flush=True)


if __name__ == "__main__":
    main()
