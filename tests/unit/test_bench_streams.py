"""``bench processing``'s baseline counts the windows the processor closes; ``bench
streams``' plant, frames and result."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from millstream.bench.plant import EPOCH_MS, plant_frames, scaled_catalog
from millstream.bench.processing import naive_rate
from millstream.bench.raw import Run
from millstream.bench.streams_result import RunInfo, shape_result
from schemas.catalog import Catalog
from streams.bench import frames_for_bench
from streams.decode import decode_frame
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


# -- bench streams: the plant, the frames, the result ------------------------------------

def test_scaled_plant_has_the_tags_sources_and_rules_asked_for(catalog: Catalog) -> None:
    big = scaled_catalog(catalog, 2_345, tags_per_source=1000)
    assert len(big.tags()) == 2_345
    assert [s.name for s in big.sources] == ["bench-000", "bench-001", "bench-002"]
    per_source = Counter(i.source.name for i in big.tags().values())
    assert per_source == {"bench-000": 1000, "bench-001": 1000, "bench-002": 345}
    assert big.streams == catalog.streams and big.detector == catalog.detector
    assert [r.name for r in big.rules] == [r.name for r in catalog.rules]
    kinds = Counter(i.spec.kind for i in big.tags().values())
    assert kinds["analog"] > kinds["counter"] > 0  # the base plant's mix, repeated
    small = scaled_catalog(catalog, 5)  # cnc-01's first five tags: one rule applies
    assert len(small.tags()) == 5 and [r.name for r in small.rules] == ["spindle-overheat"]
    assert scaled_catalog(catalog, 2).rules == []  # spindle_temp is not in it
    with pytest.raises(ValueError):
        scaled_catalog(catalog, 0)


def test_plant_frames_sample_every_tag_ten_times_a_second(catalog: Catalog) -> None:
    big = scaled_catalog(catalog, 1_500, tags_per_source=1000)
    frames = list(plant_frames(big, 30_000, frame_size=1000))
    assert sum(f.readings for f in frames) == 30_000
    decoded = [decode_frame(f.value) for f in frames]
    assert [len(d.tag) for d in decoded] == [f.readings for f in frames]
    assert all(len(d.tag) <= 1000 and f.key == d.source.encode()
               for f, d in zip(frames, decoded, strict=True))
    seqs: dict[str, list[int]] = {}
    per_tag_window: Counter[tuple[str, int]] = Counter()
    for d in decoded:
        seqs.setdefault(d.source, []).extend(d.seq.tolist())
        per_tag_window.update((t, ts - ts % 1000) for t, ts in zip(d.tag, d.ts.tolist(),
                                                                    strict=True))
    for s in seqs.values():  # numbered without gaps, as FrameBuilder numbers them
        assert s == list(range(1, len(s) + 1))
    assert set(per_tag_window.values()) == {10}  # 20 full ticks of 100 ms: 2 windows
    assert {int(d.ts[0]) for d in decoded} == {EPOCH_MS + 100 * k for k in range(20)}
    again = [f.value for f in plant_frames(big, 30_000, frame_size=1000)]
    assert again == [f.value for f in frames]  # deterministic: every run the same data


def _runs(**rates: float | None) -> dict[str, RunInfo]:
    out = {}
    for name, per_s in rates.items():
        run = Run(1000, 1, 1000 / per_s, True) if per_s else Run(0, 0, 0.0, False, "failed")
        out[name] = RunInfo(run, {"peak_rss_mb": 321.5, "run_cpu_seconds": 0.5}
                            if name == "millstream" else {})
    return out


def test_result_puts_the_issue_figures_side_by_side() -> None:
    runs = _runs(baseline=2_000_000, millstream=1_000_000, quix_per_reading=40_000,
                 quix_expand=50_000, naive_faust=5_000)
    out = json.loads(json.dumps(shape_result(2_000_000, 10_000, 500_000, {}, runs, [],
                                             "embedded")))
    assert {"readings", "tags", "millstream_per_s", "millstream_eos_per_s", "baseline_per_s",
            "quix_per_s", "naive_faust_per_s", "ratio_vs_baseline", "ratio_vs_quix",
            "worker_peak_rss_mb"} <= set(out)
    assert (out["millstream_per_s"], out["baseline_per_s"], out["quix_per_s"]) == (
        1_000_000, 2_000_000, 50_000)  # the faster of the two ways to feed Quix
    assert (out["ratio_vs_baseline"], out["ratio_vs_quix"]) == (0.5, 20.0)
    assert out["millstream_eos_per_s"] is None and out["worker_peak_rss_mb"] == 321.5
    assert out["meets_targets"] == {"millstream_per_s": True, "ratio_vs_baseline": True,
                                    "ratio_vs_quix": True, "worker_peak_rss_mb": None}
    assert out["per_cpu_second"]["millstream"] == 2000  # 1000 readings in 0.5 CPU s


def test_result_of_a_failed_worker_is_null_not_a_partial_rate() -> None:
    runs = _runs(baseline=2_000_000, millstream=None, quix_expand=50_000)
    runs["naive_faust"] = RunInfo(Run(800, 1, 0.5, False, "timed out"))
    out = shape_result(2_000_000, 100_000, 500_000, {}, runs, ["why"], "embedded")
    assert out["millstream_per_s"] is None and out["ratio_vs_baseline"] is None
    assert out["naive_faust_per_s"] == 1600  # a peer's rate over what it did, marked
    assert out["runs"]["naive_faust"]["completed"] is False and out["notes"] == ["why"]
    assert out["meets_targets"]["millstream_per_s"] is None
