"""Deduplication by sequence number, and the rescue of partly bad frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.exceptions import ContractError
from schemas.readings import SCHEMA
from streams.decode import decode_frame
from streams.dedup import SeqDedup


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.tuples(st.integers(1, 300), st.integers(1, 20)), max_size=30))
def test_each_sequence_number_is_fresh_once_within_the_tolerance(
    frames: list[tuple[int, int]],
) -> None:
    d = SeqDedup(tolerance=10_000)
    seen: set[int] = set()
    for start, n in frames:
        seq = np.arange(start, start + n, dtype=np.int64)
        fresh, why = d.fresh("s", 1, seq)
        want = [int(x) not in seen for x in seq]
        assert fresh.tolist() == want
        assert bool(why) == (not all(want))
        seen.update(seq.tolist())
    assert d.duplicates == sum(n for _, n in frames) - len(seen)


def test_far_behind_the_highest_seq_counts_as_seen_and_epochs_are_separate() -> None:
    d = SeqDedup(tolerance=100)
    d.fresh("s", 1, np.arange(1000, 1010))
    fresh, why = d.fresh("s", 1, np.arange(5, 8))  # 995 below the top: beyond tolerance
    assert not fresh.any() and why.startswith("duplicate-seq")
    fresh, _ = d.fresh("s", 1, np.arange(950, 953))  # within tolerance: a gap being filled
    assert fresh.all()
    assert d.fresh("s", 2, np.arange(1, 4))[0].all()  # a new connector session
    assert d.fresh("other", 1, np.arange(1000, 1003))[0].all()


def test_old_epochs_are_dropped_and_then_stale() -> None:
    d = SeqDedup(max_epochs=2)
    for epoch in (10, 20, 30):
        d.fresh("s", epoch, np.arange(1, 3))
    fresh, why = d.fresh("s", 5, np.arange(1, 3))
    assert not fresh.any() and why.startswith("stale-epoch") and d.stale == 2
    snap = json.loads(json.dumps(d.snapshot()))
    again = SeqDedup(max_epochs=2)
    again.restore(snap)
    assert not again.fresh("s", 30, np.arange(1, 3))[0].any()


def _raw(values: list[object], ts: list[object] | None = None) -> bytes:
    n = len(values)
    return json.dumps({"schema": SCHEMA, "source": "s", "epoch": 1, "seq": 10,
                       "tag": [f"a/t{i}" for i in range(n)], "ts": ts or list(range(n)),
                       "value": values, "quality": [0] * n}).encode()


def test_a_frame_with_a_few_bad_readings_keeps_the_good_ones() -> None:
    f = decode_frame(_raw([1.0, float("nan"), "7", float("inf"), 2**2000, None, True],
                          ts=[0, 1, 2, 3, 4, 5.5, 6]))
    assert f.tag == ["a/t0"] and f.seq.tolist() == [10]
    assert f.rejected == {"non-finite-value": [1, 3, 4], "non-numeric-value": [2, 6],
                          "bad-timestamp": [5]}
    assert f.size == 7 and f.first_seq == 10


def test_a_frame_whose_arrays_differ_in_length_is_refused_whole() -> None:
    doc = json.loads(_raw([1.0, float("nan")]))
    doc["quality"] = [0]
    with pytest.raises(ContractError) as err:
        decode_frame(json.dumps(doc))
    assert err.value.reason == "bad-field" and "equal length" in err.value.detail
