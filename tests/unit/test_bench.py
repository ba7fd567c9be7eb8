"""The benchmarks' pure parts: dispatch, the wire workload and codecs, result shaping."""

from __future__ import annotations

import argparse
import json

import pytest

from millstream.bench import BENCHMARKS, UnknownBenchmark, run_benchmark
from millstream.bench.raw import Run, count_frame, count_reading
from millstream.bench.wire import shape_result
from millstream.bench.workload import (
    EPOCH_MS,
    decode_reading,
    encode_reading,
    frame_messages,
    generate_readings,
    iter_readings,
    per_reading_messages,
    tag_models,
)
from millstream.settings import Settings
from schemas.catalog import Catalog
from schemas.exceptions import ContractError, MillstreamError
from schemas.readings import ReadingFrame


def test_unknown_benchmark_names_the_known_ones() -> None:
    args = argparse.Namespace(json=True, readings=None)
    with pytest.raises(MillstreamError) as info:
        run_benchmark("nope", Settings(), args)
    assert isinstance(info.value, UnknownBenchmark)
    assert "'nope'" in str(info.value)
    for name in BENCHMARKS:
        assert name in str(info.value)
    assert info.value.known == sorted(BENCHMARKS)


def test_workload_follows_the_catalog(catalog: Catalog) -> None:
    models = tag_models(catalog)
    assert [m.path for m in models] == list(catalog.tags())
    data = generate_readings(catalog, 95)
    assert len(data) == 95
    # every tag once per 100 ms tick, in catalog order
    assert [r.tag for r in data[: len(models)]] == [m.path for m in models]
    assert {r.ts for r in data[: len(models)]} == {EPOCH_MS}
    assert data[len(models)].ts == EPOCH_MS + 100
    for m, r in zip(models, data, strict=False):
        assert r.source == m.source and r.value is not None
        if m.kind == "analog":
            span = m.high - m.low
            assert m.low - span <= r.value <= m.high + span


def test_workload_numbers_each_source_without_gaps(catalog: Catalog) -> None:
    data = generate_readings(catalog, 500)
    by_source: dict[str, list[int]] = {}
    for r in data:
        by_source.setdefault(r.source, []).append(r.seq)
    for seqs in by_source.values():
        assert seqs == list(range(1, len(seqs) + 1))


def test_workload_is_deterministic_and_needs_a_reading(catalog: Catalog) -> None:
    assert generate_readings(catalog, 200) == generate_readings(catalog, 200)
    assert generate_readings(catalog, 200, seed=1) != generate_readings(catalog, 200)
    with pytest.raises(ValueError):
        generate_readings(catalog, 0)


def test_workload_streams_in_chunks_without_seams(catalog: Catalog) -> None:
    whole = generate_readings(catalog, 3000)
    chunked = list(iter_readings(catalog, 3000, chunk_ticks=7))
    assert [(r.tag, r.ts, r.seq) for r in chunked] == [(r.tag, r.ts, r.seq) for r in whole]
    assert len(catalog.tags()) == 42 and len({r.ts for r in chunked}) == 72  # all tags a tick


def test_both_formats_carry_the_same_readings(catalog: Catalog) -> None:
    data = generate_readings(catalog, 2500)
    per = list(per_reading_messages(data))
    assert len(per) == len(data)
    assert [decode_reading(v) for _, v in per] == data
    assert sum(count_reading(v) for _, v in per) == len(data)

    frames = list(frame_messages(data, frame_size=1000))
    decoded = [ReadingFrame.decode(v) for _, v in frames]
    assert all(len(f) <= 1000 for f in decoded)
    assert [k for k, _ in frames] == [f.source.encode() for f in decoded]
    assert sum(count_frame(v) for _, v in frames) == len(data)
    back = sorted((r for f in decoded for r in f.readings()), key=lambda r: (r.source, r.seq))
    assert back == sorted(data, key=lambda r: (r.source, r.seq))


def test_per_reading_message_shape(catalog: Catalog) -> None:
    r = generate_readings(catalog, 1)[0]
    doc = json.loads(encode_reading(r))
    assert set(doc) == {"tag", "ts", "value", "quality", "source", "epoch", "seq"}


@pytest.mark.parametrize("payload", [b"", b"[]", b'{"tag": "x"}', b"not json",
                                     b'{"tag":"","ts":1,"value":1,"quality":0,'
                                     b'"source":"s","epoch":1,"seq":1}'])
def test_decode_reading_rejects_what_is_not_a_reading(payload: bytes) -> None:
    with pytest.raises(ContractError):
        decode_reading(payload)


def test_run_rate() -> None:
    assert Run(1000, 10, 0.5, True).per_s == 2000
    assert Run(0, 0, 0.0, False).per_s is None


def test_shape_result_puts_figures_side_by_side() -> None:
    runs: dict[str, Run | None] = {
        "per_reading_raw": Run(1000, 1000, 0.01, True),
        "frames_raw": Run(1000, 1, 0.001, True),
        "frames_raw_processor": None,
        "per_reading_faust": Run(1000, 1000, 0.5, True),
        "frames_faust": Run(1000, 1, 0.002, True),
        "frames_faust_processor": Run(400, 1, 1.0, False, "timed out"),
    }
    size = {"frames": 73.04, "per_reading": 157.2}
    out = shape_result(1000, 10_000, "embedded 4.1.1", runs, size)
    assert out["benchmark"] == "wire" and out["readings"] == 1000
    assert out["frame_readings"] == 10_000
    assert out["frames"] == {"faust_readings_per_s": 500_000, "raw_readings_per_s": 1_000_000,
                             "faust_with_processor_readings_per_s": None,
                             "raw_with_processor_readings_per_s": None}
    assert out["per_reading_messages"] == {"faust_readings_per_s": 2000,
                                           "raw_readings_per_s": 100_000}
    assert out["speedup_frames_vs_per_reading_faust"] == 250.0
    assert out["faust_share_of_raw_ceiling"] == {"frames": 0.5, "per_reading": 0.02}
    assert out["bytes_per_reading"] == {"frames": 73.0, "per_reading": 157.2}
    assert out["runs"]["frames_faust_processor"]["note"] == "timed out"
    assert out["runs"]["frames_raw_processor"] is None
    assert out["kafka"] == "embedded 4.1.1"
    json.dumps(out)  # printable as the last stdout line


def test_shape_result_without_faust_figures() -> None:
    out = shape_result(10, 100, "k:9092", {"per_reading_faust": None}, {})
    assert out["speedup_frames_vs_per_reading_faust"] is None
    assert out["frames"]["faust_readings_per_s"] is None
