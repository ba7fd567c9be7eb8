"""In-process throughput of the streams stage, without Kafka (``python -m streams.bench``).

Measures readings/s of :class:`WindowStore` alone (frames already as arrays) and of
:class:`FrameProcessor` end to end from encoded frames (JSON decode, windows, detector,
rules), with frames of ``frame_size`` readings over the catalog's tags of one source.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from schemas.catalog import Catalog, load_catalog
from schemas.readings import FrameBuilder, ReadingFrame
from streams.processor import FrameProcessor
from streams.windows import WindowStore

__all__ = ["frames_for_bench", "measure"]

logger = logging.getLogger(__name__)


def frames_for_bench(catalog: Catalog, n_frames: int, frame_size: int) -> list[ReadingFrame]:
    """Deterministic frames of one source's tags, each tag sampled every 10 ms."""
    source = catalog.sources[0].name
    tags = [p for p, i in catalog.tags().items() if i.source.name == source]
    rng = np.random.default_rng(1)
    fb = FrameBuilder(source, epoch=1, max_readings=frame_size)
    t = 1_763_760_000_000
    out: list[ReadingFrame] = []
    values = rng.normal(50.0, 2.0, size=n_frames * frame_size).tolist()
    for f in range(n_frames):
        for i in range(frame_size):
            fb.add(tags[i % len(tags)], t, values[f * frame_size + i])
            if i % len(tags) == len(tags) - 1:
                t += 10  # each tag sampled every 10 ms
        frame = fb.flush()
        assert frame is not None
        out.append(frame)
    return out


def measure(catalog: Catalog | None = None, n_frames: int = 200,
            frame_size: int = 1000) -> dict[str, float]:
    """Readings per second: ``windows`` (aggregation only) and ``processor`` (end to end)."""
    cat = catalog or load_catalog()
    frames = frames_for_bench(cat, n_frames, frame_size)
    n = n_frames * frame_size
    arrays = [f.arrays() for f in frames]
    w = WindowStore(cat.streams.window_specs(), cat.streams.lateness_ms)
    t0 = time.perf_counter()
    for a in arrays:
        w.add((frames[0].source, 0), a.tag, a.ts, a.value, a.quality, a.seq)
    w.flush_all()
    windows_rate = n / (time.perf_counter() - t0)
    encoded = [f.encode() for f in frames]
    proc = FrameProcessor(cat)
    now = max(frames[-1].ts)  # the worker's clock: the frames are not from the future
    t0 = time.perf_counter()
    for i, payload in enumerate(encoded):
        proc.process(b"k", payload, "readings", 0, i, now)
    proc.flush(now)
    processor_rate = n / (time.perf_counter() - t0)
    return {"windows": windows_rate, "processor": processor_rate}


if __name__ == "__main__":
    for name, rate in measure().items():
        print(f"{name:>10}: {rate:>12,.0f} readings/s")
