"""What the worker's producers send: every kind of result, the same under both guarantees."""

from __future__ import annotations

import pytest

from schemas.topics import Topics
from streams.outputs import AtLeastOnceOutputs, ExactlyOnceOutputs, Outputs
from streams.processor import FrameProcessor
from tests.unit.test_kpis_day import M1, M, catalog, day, frames


@pytest.mark.parametrize("kind", [AtLeastOnceOutputs, ExactlyOnceOutputs])
def test_twin_parts_and_kpi_records_go_to_their_topics(kind: type[Outputs]) -> None:
    topics = Topics("t")
    proc = FrameProcessor(catalog())
    outs = [proc.process(b"plc", payload, topics.readings, 0, i, ts + 100)
            for i, (ts, payload) in enumerate(frames(day(), M)[:30])]
    twin = [p for o in outs for p in o.twin]
    kpis = [k for o in outs for k in o.kpis]
    assert twin and kpis
    outputs = kind("127.0.0.1:1", topics, app_id="a")  # no broker: messages() only
    sent = [m for o in outs for m in outputs.messages(o)]
    assert [(k, v) for t, k, v in sent if t == topics.twin_inputs] == [
        (p.key(), p.encode()) for p in twin]
    assert [(k, v) for t, k, v in sent if t == topics.kpis] == [
        (r.key(), r.encode()) for r in kpis]
    assert {k for t, k, _ in sent if t in (topics.twin_inputs, topics.kpis)} == {M1.encode()}
