"""The readings frame codec: round trips, validation errors, FrameBuilder numbering."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.exceptions import ContractError
from schemas.readings import SCHEMA, FrameBuilder, Quality, ReadingFrame

values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
readings = st.lists(
    st.tuples(st.sampled_from(["a/b/c/d/m/t1", "a/b/c/d/m/t2"]),
              st.integers(0, 2**42), values, st.sampled_from(list(Quality))),
    min_size=1, max_size=50,
)


@given(readings, st.integers(1, 2**40), st.integers(1, 20))
def test_builder_frames_round_trip_and_number_without_gaps(
        rows: list[tuple[str, int, float | None, Quality]], epoch: int, per_frame: int) -> None:
    b = FrameBuilder("src", epoch, max_readings=per_frame)
    frames = []
    for tag, ts, value, q in rows:
        b.add(tag, ts, value, q)
        if b.full:
            frames.append(b.flush())
    frames.append(b.flush())
    decoded = [ReadingFrame.decode(f.encode()) for f in frames if f is not None]
    seqs = [r.seq for f in decoded for r in f.readings()]
    assert seqs == list(range(1, len(rows) + 1))
    assert b.produced == len(rows)
    got = [(r.tag, r.ts, r.value, r.quality) for f in decoded for r in f.readings()]
    # a reading without a value is BAD, whatever quality it was given
    assert got == [(t, ts, None, Quality.BAD) if v is None else (t, ts, float(v), q)
                   for t, ts, v, q in rows]


def test_arrays_turn_null_into_nan_and_number_seqs() -> None:
    b = FrameBuilder("s", 1)
    b.add("x", 10, 1.5)
    b.add("x", 20, None, Quality.BAD)
    f = b.flush()
    assert f is not None
    a = f.arrays()
    assert a.ts.tolist() == [10, 20]
    assert a.value[0] == 1.5 and math.isnan(a.value[1])
    assert a.quality.tolist() == [0, 2]
    assert a.seq.tolist() == [1, 2]
    assert a.value.dtype == np.float64


def test_non_finite_values_become_bad_nulls() -> None:
    b = FrameBuilder("s", 1)
    b.add("x", 1, float("nan"))
    f = b.flush()
    assert f is not None and f.value == [None] and f.quality == [Quality.BAD]


def _doc(**over: object) -> bytes:
    doc: dict[str, object] = {"schema": SCHEMA, "source": "s", "epoch": 1, "seq": 1,
                              "tag": ["t"], "ts": [5], "value": [1.0], "quality": [0]}
    doc.update(over)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (None, "empty-message"),
        (b"{not json", "not-json"),
        (b"\xff\xfe", "not-json"),
        (b"[1,2]", "not-an-object"),
        (_doc(schema="other.v1"), "wrong-schema"),
        (_doc(source=""), "bad-field"),
        (_doc(seq=0), "bad-field"),
        (_doc(seq=True), "bad-field"),
        (_doc(ts=[5, 6]), "bad-field"),
        (_doc(tag=[]), "bad-field"),
        (_doc(quality=[3]), "bad-field"),
        (_doc(value=["x"]), "bad-field"),
        (_doc(value=[True]), "bad-field"),
        (_doc(ts=[1.5]), "bad-field"),
        (_doc(tag=None), "bad-field"),
    ],
)
def test_decode_rejects_with_a_stable_reason(payload: bytes | None, reason: str) -> None:
    with pytest.raises(ContractError) as err:
        ReadingFrame.decode(payload)
    assert err.value.reason == reason


def test_nan_in_json_is_rejected() -> None:
    with pytest.raises(ContractError, match="finite"):
        ReadingFrame.decode(_doc().replace(b"[1.0]", b"[NaN]"))


extras = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(0, 2**42)),
              st.one_of(st.none(), st.sampled_from(["BadNodeIdUnknown", "gap: connection lost"])),
              st.one_of(st.none(), st.text(max_size=8))),
    min_size=1, max_size=30,
)


@given(extras)
def test_optional_columns_round_trip_and_stay_aligned(rows: list[tuple[int | None, str | None,
                                                                         str | None]]) -> None:
    """server_ts, status and text appear only when some reading has one, and stay aligned
    with the readings even when the first readings of a frame have none."""
    b = FrameBuilder("s", 1)
    for i, (server_ts, status, text) in enumerate(rows):
        b.add(f"a/b/c/d/m/t{i}", i, float(i), server_ts=server_ts, status=status, text=text)
    frame = b.flush()
    assert frame is not None
    doc = json.loads(frame.encode())
    for name, col in (("server_ts", 0), ("status", 1), ("text", 2)):
        assert (name in doc) == any(r[col] is not None for r in rows)
    got = [(r.server_ts, r.status, r.text) for r in ReadingFrame.decode(frame.encode()).readings()]
    assert got == rows
    # a text tag's value is its text: value null, quality as given (not BAD)
    for r, (_, _, text) in zip(ReadingFrame.decode(frame.encode()).readings(), rows, strict=True):
        assert (r.value is None) == (text is not None)
        assert r.quality == Quality.GOOD


@pytest.mark.parametrize(("extra", "reason"), [
    ({"status": ["x", "y"]}, "status must be an array as long as tag"),
    ({"server_ts": ["1"]}, "server_ts entry '1' has the wrong type"),
    ({"text": [5]}, "text entry 5 has the wrong type"),
])
def test_optional_columns_are_validated(extra: dict[str, object], reason: str) -> None:
    doc = {"schema": SCHEMA, "source": "s", "epoch": 1, "seq": 1, "tag": ["t"], "ts": [1],
           "value": [1.0], "quality": [0], **extra}
    with pytest.raises(ContractError, match=reason):
        ReadingFrame.decode(json.dumps(doc))
