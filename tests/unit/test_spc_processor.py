"""SPC inside the FrameProcessor: charted once per reading, sent to the spc topic, and
carried in each partition's checkpoint (through the checkpoint codec)."""

from __future__ import annotations

from schemas.catalog import Catalog
from schemas.readings import FrameBuilder
from schemas.spc_events import SpcViolation
from schemas.topics import Topics
from streams.outputs import AtLeastOnceOutputs
from streams.processor import FrameProcessor, Output
from streams.state import decode_state, encode_state
from tests.support.spc import spc_catalog, spc_doc

CYCLE = "acme/plant1/machining/line1/cnc-01/cycle_time"
T0 = 1_763_760_000_000
NOW = T0 + 60_000


def _frames(values: list[float], start: int, epoch: int = 1) -> list[bytes]:
    fb = FrameBuilder("opcua-sim", epoch=epoch, max_readings=10)
    out = []
    for i, v in enumerate(values):
        fb.add(CYCLE, start + i * 100, v)
        if fb.full:
            f = fb.flush()
            assert f is not None
            out.append(f.encode())
    f = fb.flush()
    if f is not None:
        out.append(f.encode())
    return out


def _run(proc: FrameProcessor, frames: list[bytes], first_offset: int = 0) -> Output:
    total = Output()
    for i, f in enumerate(frames):
        out = proc.process(b"opcua-sim", f, "r", 0, first_offset + i, NOW)
        assert out.deadletters == []
        total.spc += out.spc
    return total


BASELINE = [35.8, 36.2] * 25


def test_a_jump_comes_out_on_the_spc_topic_once() -> None:
    catalog = spc_catalog()
    proc = FrameProcessor(catalog)
    frames = _frames([*BASELINE, 57.6, 36.0], T0)
    out = _run(proc, frames)
    assert [r.rule for r in out.spc if isinstance(r, SpcViolation)] == [
        "western_electric-1", "nelson-1", "range-1"]
    assert bool(Output(spc=out.spc))
    msgs = AtLeastOnceOutputs("127.0.0.1:1", Topics("t"), app_id="a").messages(out)
    assert {(topic, key) for topic, key, _ in msgs} == {("t.spc", CYCLE.encode())}
    # the same frames delivered again are dropped by sequence number: nothing charted
    again = _run(proc, frames, first_offset=len(frames))
    assert again.spc == []
    assert proc.counters()["spc"]["points"] == 52


def test_the_charts_move_with_their_partition() -> None:
    catalog = spc_catalog()
    whole, first = FrameProcessor(catalog), FrameProcessor(catalog)
    head = _frames([*BASELINE, 36.3, 36.5], T0)
    tail = _frames([36.7, 36.9, 37.1, 37.3, 38.0], T0 + 5_200, epoch=2)
    for p in (whole, first):
        _run(p, head)
    snap = decode_state(encode_state(first.snapshot(0, arrays=True)))
    assert CYCLE in snap["spc"]["charts"]
    second = FrameProcessor(catalog)
    second.restore(snap, 0, NOW)
    a, b = _run(whole, tail, len(head)), _run(second, tail, len(head))
    assert a.spc == b.spc  # as if the partition had never moved
    assert {"nelson-3", "western_electric-1", "nelson-1"} <= {
        r.rule for r in a.spc if isinstance(r, SpcViolation)}
    first.drop(0)
    assert first.spc.engine.charts[CYCLE].limits is None
    assert first.snapshot(0)["spc"]["charts"] == {}


def test_a_changed_catalog_entry_rebases_instead_of_restoring() -> None:
    catalog = spc_catalog()
    proc = FrameProcessor(catalog)
    _run(proc, _frames(BASELINE, T0))
    snap = decode_state(encode_state(proc.snapshot(0, arrays=True)))
    changed = FrameProcessor(Catalog.model_validate(spc_doc(baseline_id="new tool")))
    changed.restore(snap, 0, NOW)
    assert changed.spc.engine.charts[CYCLE].limits is None
    same = FrameProcessor(catalog)
    same.restore(snap, 0, NOW)
    assert same.spc.engine.charts[CYCLE].limits is not None
