"""Bad input through the FrameProcessor: routed and counted, never in the windows.

The property test builds a stream of readings, some of them bad (NaN, Inf, strings,
unknown tags, timestamps far ahead of the worker's clock or far behind its watermark),
delivers it in random frames, in an order shuffled within the allowed lateness, with
some frames delivered twice and some that cannot be read at all. The published
aggregates of every window size must equal a recomputation over the valid readings.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog, StreamsSpec, WindowSpec
from schemas.readings import SCHEMA
from streams.processor import FrameProcessor, Output

T0 = 1_763_760_000_000
NOW = T0 + 60_000
LATENESS = 1500
SPECS = [WindowSpec(size_ms=1000), WindowSpec(size_ms=3000, hop_ms=1000),
         WindowSpec(size_ms=2000)]
SOURCE = "opcua-sim"
CNC = "acme/plant1/machining/line1/cnc-01"
TAGS = [f"{CNC}/spindle_temp", f"{CNC}/vibration_rms", f"{CNC}/motor_current",
        "acme/plant1/nowhere/x/y/ghost"]
KINDS = ["num"] * 8 + ["none", "nan", "inf", "str", "future", "past"]


def _catalog(catalog: Catalog) -> Catalog:
    spec = StreamsSpec(windows=SPECS, lateness_ms=LATENESS)
    return catalog.model_copy(update={"streams": spec})


reading_st = st.tuples(
    st.integers(0, 3),  # tag (3: not in the catalog)
    st.integers(0, 300),  # ms after the previous reading
    st.integers(0, LATENESS - 1),  # delivery delay: within the lateness
    st.sampled_from(KINDS),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0, 0, 1, 2]),
)


def _stream(raw: list[tuple[int, int, int, str, float, int]]) -> list[dict[str, Any]]:
    """The readings in delivery order, each with its seq (its position, from 1)."""
    t, made = T0, []
    for tag, step, delay, kind, x, q in raw:
        t += step
        ts = {"future": NOW + 400_000, "past": T0 - 86_400_000}.get(kind, t)
        value: Any = {"none": None, "nan": math.nan, "inf": -math.inf, "str": "7.5"}.get(kind, x)
        quality = 2 if kind == "none" else q
        made.append({"tag": TAGS[tag], "ts": ts, "value": value, "quality": quality,
                     "kind": kind, "arrive": t + delay})
    made.sort(key=lambda r: r["arrive"])  # stable: ties keep generation order
    for i, r in enumerate(made):
        r["seq"] = i + 1
    return made


def _payload(rows: list[dict[str, Any]]) -> bytes:
    doc = {"schema": SCHEMA, "source": SOURCE, "epoch": 1, "seq": rows[0]["seq"],
           **{k: [r[k] for r in rows] for k in ("tag", "ts", "value", "quality")}}
    return json.dumps(doc).encode()  # NaN and Infinity as Python's json writes them


def _expected(valid: list[dict[str, Any]]) -> dict[tuple[int, str, int], tuple[Any, ...]]:
    groups: dict[tuple[int, str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in valid:
        for spec in SPECS:
            pane = r["ts"] - r["ts"] % spec.pane_ms
            for start in range(pane - spec.size_ms + spec.pane_ms, pane + 1, spec.pane_ms):
                groups[(spec.size_ms, r["tag"], start)].append(r)
    out = {}
    for key, rs in groups.items():
        with_value = sorted((r for r in rs if r["value"] is not None and r["quality"] != 2),
                            key=lambda r: (r["ts"], r["seq"]))
        if not with_value:
            continue
        vs = [r["value"] for r in with_value]
        good = sum(1 for r in with_value if r["quality"] == 0)
        mean = math.fsum(vs) / len(vs)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in vs) / len(vs))
        out[key] = (len(vs), min(vs), max(vs), vs[0], vs[-1], good / len(rs), mean, std)
    return out


@settings(max_examples=150, deadline=None)
@given(raw=st.lists(reading_st, min_size=1, max_size=60),
       cuts=st.lists(st.integers(1, 60), max_size=8),
       again=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), max_size=3),
       ragged_at=st.lists(st.integers(0, 8), max_size=2))
def test_aggregates_equal_a_recomputation_over_the_valid_readings(
    catalog: Catalog, raw: list[tuple[int, int, int, str, float, int]], cuts: list[int],
    again: list[tuple[int, int]], ragged_at: list[int],
) -> None:
    rows = _stream(raw)
    bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
    frames = [rows[a:b] for a, b in itertools.pairwise(bounds)]
    proc = FrameProcessor(_catalog(catalog))
    outs: list[Output] = []
    redelivered = ragged = 0
    for i, frame in enumerate(frames):
        if i in ragged_at:  # arrays of different lengths: nothing in it can be trusted
            bad = json.loads(_payload(frame))
            bad["ts"].append(T0)
            outs.append(proc.process(None, json.dumps(bad).encode(), "r", 0, -1, NOW))
            ragged += 1
        outs.append(proc.process(None, _payload(frame), "r", 0, i, NOW))
        for j, after in again:
            if after == i and j <= i:  # delivered again, later
                outs.append(proc.process(None, _payload(frames[j]), "r", 0, i, NOW))
                redelivered += len(frames[j])
    outs.append(proc.flush(NOW))

    # which readings are valid, and where each bad one must have gone
    valid: list[dict[str, Any]] = []
    late: list[int] = []
    dead: Counter[str] = Counter()
    max_ts: int | None = None  # highest timestamp of the frames before: the watermark's base
    for frame in frames:
        for r in frame:
            if r["tag"] == TAGS[3] and r["kind"] not in ("nan", "inf", "str"):
                dead["unknown-tag"] += 1
            elif r["kind"] == "future":
                dead["future-timestamp"] += 1
            elif r["kind"] in ("nan", "inf"):
                dead["non-finite-value"] += 1
            elif r["kind"] == "str":
                dead["non-numeric-value"] += 1
            elif max_ts is not None and r["ts"] + 3000 <= max_ts - LATENESS:
                late.append(r["seq"])  # behind the watermark: all its windows had closed
            else:
                valid.append(r)
        eligible = [r["ts"] for r in frame if r["tag"] != TAGS[3]
                    and r["kind"] in ("num", "none", "past")]
        max_ts = max([*eligible, *([] if max_ts is None else [max_ts])], default=None)

    got: dict[tuple[int, str, int], tuple[Any, ...]] = {}
    for out in outs:
        for f in out.aggregate_frames:
            f = AggregateFrame.decode(f.encode())  # what consumers read
            for a in f.aggregates():
                key = (int(a.window_ms or 0), a.tag, a.window_start)
                assert key not in got, f"window emitted twice: {key}"
                got[key] = (a.count, a.min, a.max, a.first, a.last, a.good_share, a.mean, a.std)
    want = _expected(valid)
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert g[:6] == pytest.approx(w[:6], rel=0, abs=0), key
        assert g[6] == pytest.approx(w[6], rel=1e-9, abs=1e-6), key
        assert g[7] == pytest.approx(w[7], rel=1e-6, abs=1e-5), key

    c = proc.counters()
    assert c["dead_readings"] == {k: v for k, v in dead.items() if v}
    routed_late = sorted(s for out in outs for lr in out.late for s in lr.seq)
    assert routed_late == sorted(late) and c["late"] == len(late)
    assert c["duplicates"] == redelivered
    assert c["readings"] == len(rows) + redelivered
    letters = [d for out in outs for d in out.deadletters]
    assert sum(1 for d in letters if d.reason == "bad-field") == ragged


def test_a_restored_snapshot_continues_as_if_never_stopped(catalog: Catalog) -> None:
    rows = _stream([(i % 3, 97, (i * 7) % LATENESS, "num", float(i), i % 3)
                    for i in range(80)])
    frames = [rows[i:i + 9] for i in range(0, len(rows), 9)]

    def run(cut: int | None) -> list[tuple[Any, ...]]:
        proc = FrameProcessor(_catalog(catalog))
        got = []
        for i, frame in enumerate(frames):
            if i == cut:  # a new worker takes over from the snapshot
                snap = json.loads(json.dumps(proc.snapshot(), allow_nan=False))
                proc = FrameProcessor(_catalog(catalog))
                proc.restore(snap)
                # the frame before the cut is delivered again, as after a crash
                proc.process(None, _payload(frames[i - 1]), "r", 0, i - 1, NOW)
            out = proc.process(None, _payload(frame), "r", 0, i, NOW)
            got += [a for f in out.aggregate_frames for a in f.aggregates()]
        got += [a for f in proc.flush(NOW).aggregate_frames for a in f.aggregates()]
        return sorted((a.window_ms, a.tag, a.window_start, a.count, a.mean, a.last)
                      for a in got)

    whole = run(None)
    assert len(whole) > 20
    assert run(4) == whole
