"""The streams benchmark's baseline counts the same windows the real processor closes."""

from __future__ import annotations

from millstream.bench.processing import naive_rate
from schemas.catalog import Catalog
from streams.bench import frames_for_bench
from streams.processor import FrameProcessor


def test_naive_baseline_sees_the_windows_the_processor_closes(catalog: Catalog) -> None:
    frames = frames_for_bench(catalog, 5, 1000)
    rate, windows = naive_rate([f.encode() for f in frames], catalog.streams.window_ms)
    proc = FrameProcessor(catalog)
    now = max(frames[-1].ts)  # the worker's clock (readings ahead of it are dead letters)
    aggregates = 0
    for i, f in enumerate(frames):
        aggregates += len(proc.process(f.key(), f.encode(), "r", 0, i, now).aggregates)
    aggregates += len(proc.flush(now).aggregates)
    assert rate > 0
    assert windows == aggregates > 0
