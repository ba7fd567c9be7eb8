"""The Sparkplug B host state machine: births, aliases, seq gaps, deaths, rebirths."""

from __future__ import annotations

from connectors.sparkplug import Outcome, SparkplugHost
from schemas.readings import Quality
from schemas.sparkplug import (
    DataType,
    Payload,
    build_payload,
    decode_payload,
    new_metric,
    parse_topic,
)

METRICS = {"Pressure": (1, DataType.Double), "Running": (2, DataType.Boolean),
           "Unmapped": (3, DataType.Int32)}


def rule(group: str, node: str, device: str | None, metric: str) -> str | None:
    if metric == "Unmapped":
        return None
    return f"{group}/{device or node}/{metric.lower()}"


class Edge:
    """Builds the messages of one edge node, numbering seq like a real one."""

    def __init__(self, host: SparkplugHost, bd_seq: int = 0) -> None:
        self.host = host
        self.bd_seq = bd_seq
        self.seq = 0

    def send(self, kind: str, metrics: list[Payload.Metric], *, device: str | None = None,
             seq: int | None = -1, now: int = 1000) -> Outcome:
        if seq == -1:
            seq = self.seq
            self.seq = (self.seq + 1) % 256
        topic = parse_topic(f"spBv1.0/g1/{kind}/edge" + (f"/{device}" if device else ""))
        assert topic is not None
        raw = build_payload(metrics, timestamp=now, seq=seq)
        return self.host.handle(topic, decode_payload(raw), now)

    def nbirth(self, now: int = 1000) -> Outcome:
        self.seq = 0
        return self.send("NBIRTH", [new_metric("bdSeq", None, DataType.Int64, self.bd_seq),
                                    new_metric("Node Control/Rebirth", None, DataType.Boolean,
                                               False)], now=now)

    def dbirth(self, device: str = "d1", now: int = 1000) -> Outcome:
        return self.send("DBIRTH", [new_metric(n, a, t, 1, properties={"engUnit": "bar"})
                                    for n, (a, t) in METRICS.items()], device=device, now=now)

    def ddata(self, alias: int = 1, value: float = 5.0, device: str = "d1",
              now: int = 2000, seq: int | None = -1) -> Outcome:
        return self.send("DDATA", [new_metric(None, alias, DataType.Double, value)],
                         device=device, now=now, seq=seq)

    def ndeath(self, bd_seq: int | None = None) -> Outcome:
        bd = self.bd_seq if bd_seq is None else bd_seq
        return self.send("NDEATH", [new_metric("bdSeq", None, DataType.Int64, bd)], seq=None)


def test_birth_then_data_by_alias() -> None:
    edge = Edge(SparkplugHost(rule))
    assert edge.nbirth().emits == []  # bdSeq and Node Control are not plant data
    out = edge.dbirth()
    assert {(e.tag, e.value) for e in out.emits} == {("g1/d1/pressure", 1.0),
                                                     ("g1/d1/running", 1.0)}
    assert [p.reason for p in out.problems] == ["unknown-tag"]  # Unmapped, named once
    assert "Unmapped" in out.problems[0].detail
    out = edge.ddata(value=7.5)
    assert [(e.tag, e.ts, e.value, e.quality) for e in out.emits] == [
        ("g1/d1/pressure", 2000, 7.5, Quality.GOOD)]
    assert not out.rebirth and not out.problems
    edge.ddata(alias=3)
    assert edge.host.counts["unmapped_values"] == 1


def test_seq_gap_marks_the_node_and_asks_rebirth() -> None:
    edge = Edge(SparkplugHost(rule))
    edge.nbirth()
    edge.dbirth()
    edge.ddata()
    out = edge.ddata(seq=edge.seq + 2, now=3000)  # two messages lost
    gaps = [e for e in out.emits if e.quality == Quality.BAD]
    assert {e.tag for e in gaps} == {"g1/d1/pressure", "g1/d1/running"}
    assert all(e.status and e.status.startswith("gap: Sparkplug seq") for e in gaps)
    assert out.emits[-1].value == 5.0  # the message itself still counts
    assert out.rebirth and edge.host.counts["seq_gaps"] == 1


def test_seq_wraps_after_255() -> None:
    edge = Edge(SparkplugHost(rule))
    edge.nbirth()
    edge.dbirth()
    for _ in range(300):
        out = edge.ddata()
        assert not out.rebirth
    assert edge.host.counts["seq_gaps"] == 0


def test_data_before_birth_is_dead_lettered_and_asks_rebirth_once_per_interval() -> None:
    edge = Edge(SparkplugHost(rule, rebirth_every_ms=5000))
    out = edge.ddata(now=1000)
    assert out.emits == [] and out.rebirth
    assert [p.reason for p in out.problems] == ["sparkplug-no-birth"]
    assert not edge.ddata(now=2000).rebirth  # asked 1 s ago
    assert edge.ddata(now=7000).rebirth
    edge.nbirth(now=8000)
    out = edge.ddata(device="d9", now=9000)  # the node is born, the device is not
    assert [p.reason for p in out.problems] == ["sparkplug-no-birth"] and out.rebirth


def test_unknown_alias() -> None:
    edge = Edge(SparkplugHost(rule))
    edge.nbirth()
    edge.dbirth()
    out = edge.ddata(alias=99)
    assert out.emits == [] and out.rebirth
    assert [p.reason for p in out.problems] == ["sparkplug-unknown-alias"]
    assert "alias 99" in out.problems[0].detail


def test_ndeath_marks_everything_bad_and_stale_will_is_ignored() -> None:
    host = SparkplugHost(rule)
    edge = Edge(host, bd_seq=4)
    edge.nbirth()
    edge.dbirth()
    edge.dbirth(device="d2")
    edge.ddata(now=5000)
    assert edge.ndeath(bd_seq=3).emits == []  # an older session's will
    assert host.counts["stale_deaths"] == 1
    out = edge.ndeath()
    assert len(out.emits) == 4 and all(e.quality == Quality.BAD for e in out.emits)
    assert all(e.status == "gap: NDEATH g1/edge (bdSeq 4)" for e in out.emits)
    assert min(e.ts for e in out.emits if e.tag == "g1/d1/pressure") > 5000  # after the data
    out = edge.ddata()  # dead node: no data accepted until it is born again
    assert [p.reason for p in out.problems] == ["sparkplug-no-birth"]


def test_ddeath_marks_only_that_device() -> None:
    edge = Edge(SparkplugHost(rule))
    edge.nbirth()
    edge.dbirth("d1")
    edge.dbirth("d2")
    out = edge.send("DDEATH", [], device="d2")
    assert {e.tag for e in out.emits} == {"g1/d2/pressure", "g1/d2/running"}
    assert edge.ddata(device="d1").emits
    assert edge.ddata(device="d2").problems[0].reason == "sparkplug-no-birth"


def test_node_that_reconnects_without_a_death_seen() -> None:
    host = SparkplugHost(rule)
    edge = Edge(host, bd_seq=1)
    edge.nbirth()
    edge.dbirth()
    edge.bd_seq = 2
    out = edge.nbirth(now=4000)
    assert {e.status for e in out.emits} == {
        "gap: g1/edge began a new session (bdSeq 1 -> 2) without an NDEATH"}
    assert edge.ddata().problems[0].reason == "sparkplug-no-birth"  # old device aliases gone
    edge.dbirth()
    assert edge.ddata(value=3.0).emits[0].value == 3.0
    assert edge.ndeath(bd_seq=1).emits == []  # the first session's will, late
    assert host.counts["births"] == 4


def test_commands_are_not_data() -> None:
    edge = Edge(SparkplugHost(rule))
    out = edge.send("NCMD", [new_metric("Node Control/Rebirth", None, DataType.Boolean, True)],
                    seq=None)
    assert out == Outcome() and edge.host.counts["commands_seen"] == 1
