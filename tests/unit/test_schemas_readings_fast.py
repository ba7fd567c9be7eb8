"""The fast frame decoder (msgspec) accepts exactly what the checked one accepts, with the
same values of the same types; whatever it leaves, the checked decoder rejects or names."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.exceptions import ContractError
from schemas.readings import SCHEMA, ReadingFrame, _decode_fast

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.sampled_from([0, 1, 2, 3, -1]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["", "t", "a/b", "\u00e9"]),
    st.text(max_size=4),
)
columns = st.one_of(scalars, st.lists(scalars, max_size=4))
FIELDS = ("schema", "source", "epoch", "seq", "tag", "ts", "value", "quality", "server_ts",
          "status", "text")


def _base(n: int) -> dict[str, Any]:
    return {"schema": SCHEMA, "source": "s", "epoch": 7, "seq": 1, "tag": ["a"] * n,
            "ts": list(range(n)), "value": [1.5] * n, "quality": [0] * n}


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A valid frame with some fields replaced, dropped or added, as JSON text."""
    n = draw(st.integers(1, 4))
    doc: dict[str, Any] = _base(n)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        action = draw(st.sampled_from(["replace", "drop", "column"]))
        if action == "drop":
            doc.pop(name, None)
        elif action == "column":  # a column of the right length with one odd entry
            old = doc.get(name)
            rest = old[1:n] if isinstance(old, list) else [None] * (n - 1)
            doc[name] = [draw(scalars), *rest]
        else:
            doc[name] = draw(columns)
    return json.dumps(doc)  # NaN and Infinity come out as Python's non-standard literals


def _typed(frame: ReadingFrame) -> list[Any]:
    out: list[Any] = []
    for name in FIELDS[1:]:
        value = getattr(frame, name)
        out.append([(type(x), x) for x in value] if isinstance(value, list)
                   else (type(value), value))
    return out


@settings(max_examples=400, deadline=None)
@given(documents())
def test_fast_decoder_agrees_with_the_checked_one(payload: str) -> None:
    fast = _decode_fast(payload.encode())
    try:
        checked = ReadingFrame.decode_checked(payload.encode())
    except ContractError:
        assert fast is None, "the fast decoder accepted a frame the checked one rejects"
        return
    if fast is not None:
        assert _typed(fast) == _typed(checked)


@pytest.mark.parametrize("payload", [
    b'{"schema":"millstream.readings.v1","source":"s","epoch":1,"seq":1,"tag":["t"],'
    b'"ts":[5],"value":[1e400],"quality":[0]}',
    b'{"schema":"millstream.readings.v1","source":"s","epoch":1,"seq":1,"tag":["t"],'
    b'"ts":[5],"value":[' + str(10**400).encode() + b'],"quality":[0]}',
    b'{"schema":"millstream.readings.v1","source":"s","epoch":1,"seq":1,"tag":["\xff"],'
    b'"ts":[5],"value":[1],"quality":[0]}',
])
def test_what_the_fast_decoder_leaves_is_named_by_the_checked_one(payload: bytes) -> None:
    assert _decode_fast(payload) is None
    with pytest.raises(ContractError) as err:
        ReadingFrame.decode(payload)
    assert err.value.reason in {"bad-field", "not-json"}


def test_a_plain_frame_takes_the_fast_path_and_keeps_integer_values() -> None:
    doc = {**_base(2), "value": [1, None], "quality": [0, 2], "status": [None, "gap: x"]}
    frame = _decode_fast(json.dumps(doc).encode())
    assert frame is not None
    assert frame.value == [1, None] and type(frame.value[0]) is int
    assert frame.status == [None, "gap: x"] and frame.server_ts is None
    assert frame == ReadingFrame.decode_checked(json.dumps(doc))
