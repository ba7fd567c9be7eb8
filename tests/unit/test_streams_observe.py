"""The worker's lag and frame metrics, from what the Faust edge saw (no broker needed)."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.health import HealthConfig, StageHealth
from streams.observe import WorkerProbe
from tests.support.scrape import scrape, value


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self, highwaters: dict[TP, int | None]) -> None:
        self.highwaters = highwaters

    def assignment(self) -> set[TP]:
        return set(self.highwaters)

    def highwater(self, tp: TP) -> int | None:
        return self.highwaters[tp]


def test_lag_counts_the_readings_partitions_behind_what_was_processed() -> None:
    probe = WorkerProbe(StageHealth("streams"), "p.readings", ["opcua-sim"])
    consumer = FakeConsumer({TP("p.readings", 0): 120, TP("p.readings", 1): 50,
                             TP("p.readings", 2): None, TP("p.other", 0): 999})
    assert probe.lag(consumer) == 0  # nothing processed yet: unknown positions are not lag
    probe.seen(0, 99, b"opcua-sim", 10, 0.001)  # next offset 100: 20 behind
    probe.seen(1, 49, b"opcua-sim", 10, 0.001)  # caught up
    probe.seen(2, 5, b"opcua-sim", 10, 0.001)  # highwater not known yet
    assert probe.lag(consumer) == 20
    assert probe.lag(None) is None


def test_frames_are_labelled_by_catalog_source_only() -> None:
    with StageHealth("streams", HealthConfig(port=0)) as health:
        assert health.url is not None
        probe = WorkerProbe(health, "p.readings", ["opcua-sim"])
        probe.seen(0, 0, b"opcua-sim", 500, 0.002)
        probe.seen(0, 1, b"made-up-key", 3, 0.001)
        probe.seen(0, 2, b"opcua-sim", 0, 0.001)  # a bad message: timed, no frame size
        m = scrape(health.url)
    assert value(m, "millstream_frame_readings_count", source="opcua-sim") == 1
    assert value(m, "millstream_frame_readings_sum", source="other") == 3
    assert value(m, "millstream_process_seconds_count", topic="p.readings") == 3
