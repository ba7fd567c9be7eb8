"""OPC-UA notification -> reading, gap markers and monitored-item requests, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

from asyncua import ua

from connectors.opcua_gaps import GapTracker
from connectors.opcua_items import Item, plan, queue_size, request
from connectors.opcua_values import Converted, convert, status_name
from schemas.opcua import Deadband, MonitoringSpec
from schemas.readings import Quality

T = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
MS = 1735787045678


def dv(value: Any, code: int = 0, *, source: datetime | None = T,
       server: datetime | None = T + timedelta(seconds=1)) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value), ua.StatusCode(cast(ua.UInt32, code)),
                        SourceTimestamp=cast(ua.DateTime, source),
                        ServerTimestamp=cast(ua.DateTime, server))


def test_numbers_booleans_and_both_timestamps() -> None:
    assert convert(True, dv(True), 5) == Converted(MS, 1.0, Quality.GOOD, MS + 1000)
    assert convert(False, dv(False), 5).value == 0.0
    assert convert(7, dv(7), 5).value == 7.0
    assert convert(2.5, dv(2.5, source=None), 5).ts == MS + 1000  # server ts stands in
    assert convert(2.5, None, 5) == Converted(5, 2.5, Quality.GOOD)  # nothing: when received


def test_status_keeps_its_name_and_severity() -> None:
    uncertain = convert(1.5, dv(1.5, ua.StatusCodes.UncertainLastUsableValue), 5)
    assert (uncertain.value, uncertain.quality) == (1.5, Quality.UNCERTAIN)
    assert uncertain.status == "UncertainLastUsableValue"
    bad = convert(None, dv(None, ua.StatusCodes.BadNodeIdUnknown), 5)
    assert (bad.value, bad.quality, bad.status) == (None, Quality.BAD, "BadNodeIdUnknown")
    assert status_name(0) is None
    assert status_name(ua.StatusCodes.GoodOverload) == "GoodOverload"
    assert status_name(ua.StatusCodes.BadSensorFailure | 0x480) == "BadSensorFailure+0x0480"
    assert status_name(0x80FF0000) == "0x80FF0000"  # not in the table: still named


def test_values_that_are_not_numbers_are_bad_with_a_reason() -> None:
    cases: list[tuple[Any, str]] = [
        ("12.5", "not a number: a string on a numeric tag"),
        (b"\x00\x01", "not a number: a byte string on a numeric tag"),
        ([1.0, 2.0, 3.0], "not a number: an array of 3 on a numeric tag"),
        (float("nan"), "not finite: nan"),
        (float("inf"), "not finite: inf"),
        (ua.ExtensionObject(TypeId=ua.NodeId(ua.Int32(999), ua.Int16(3))),
         "not a number: an undecoded structure (ns=3;i=999) on a numeric tag"),
        (ua.LocalizedText("x"), "not a number: a LocalizedText on a numeric tag"),
    ]
    for value, why in cases:
        got = convert(value, dv(value), 5)
        assert (got.value, got.quality, got.status) == (None, Quality.BAD, why), value
    # the device's own status stays in front of the reason
    both = convert("x", dv("x", ua.StatusCodes.UncertainInitialValue), 5)
    assert both.status == "UncertainInitialValue; not a number: a string on a numeric tag"
    assert convert(None, dv(None), 5).status == "no value"


def test_text_tags_carry_strings() -> None:
    assert convert("RUN", dv("RUN"), 5, text=True) == Converted(MS, None, Quality.GOOD,
                                                                 MS + 1000, None, "RUN")
    assert convert(ua.LocalizedText("Auto"), None, 5, text=True).text == "Auto"
    wrong = convert(3.0, None, 5, text=True)
    assert (wrong.quality, wrong.status) == (Quality.BAD, "not text: a float on a text tag")


def test_gap_marker_then_resumed_value_in_ts_order() -> None:
    g = GapTracker()
    first = Converted(1000, 1.0, Quality.GOOD)
    assert g.admit("a", first) == first
    assert g.admit("a", first) is None and g.repeats == 1  # an identical resend
    markers = g.mark(["a", "b"], now=900, reason="connection lost to X")
    # never before the tag's last reading; a tag never seen gets one at detection time
    assert markers == [Converted(1001, None, Quality.BAD, status="gap: connection lost to X"),
                       Converted(900, None, Quality.BAD, status="gap: connection lost to X")]
    assert g.mark(["a", "b"], now=2000, reason="again") == [None, None]  # one per gap
    resumed = g.admit("a", first)  # the server resends the unchanged value
    assert resumed == Converted(1002, 1.0, Quality.GOOD,
                                status="resumed after gap; source ts 1000")
    assert g.admit("a", first) is None  # the gap is closed: a repeat again
    newer = Converted(5000, 2.0, Quality.UNCERTAIN, status="UncertainLastUsableValue")
    assert g.admit("b", newer) == newer  # later than the marker: as it is
    assert (g.markers, g.resumed) == (2, 1)
    # the next gap starts after the resumed reading's published ts
    assert g.mark(["a"], now=500, reason="r") == [Converted(1003, None, Quality.BAD,
                                                            status="gap: r")]


def test_tag_monitoring_overrides_keep_their_types() -> None:
    base = MonitoringSpec(sampling_ms=100, publishing_ms=100, queue_size=4)
    tag = MonitoringSpec(sampling_ms=20, deadband=Deadband(kind="absolute", value=0.5))
    merged = base.merged(tag)
    assert merged == MonitoringSpec(sampling_ms=20, publishing_ms=100, queue_size=4,
                                    deadband=Deadband(kind="absolute", value=0.5))
    assert isinstance(merged.deadband, Deadband)


def test_items_group_by_publishing_interval_in_chunks() -> None:
    fast = MonitoringSpec(sampling_ms=50, publishing_ms=100)
    slow = MonitoringSpec(sampling_ms=1000, publishing_ms=1000, queue_size=3,
                          deadband=Deadband(kind="percent", value=2.5))
    items = [Item(n, f"t{n}", ua.NodeId(ua.Int32(n), ua.Int16(2)), fast if n % 3 else slow)
             for n in range(1, 11)]
    groups = plan(items, chunk=4)
    assert [(g.publishing_ms, [i.handle for i in g.items]) for g in groups] == [
        (100.0, [1, 2, 4, 5]), (100.0, [7, 8, 10]), (1000.0, [3, 6, 9])]
    assert queue_size(fast) == 3 and queue_size(slow) == 3
    req = request(items[2])
    p = req.RequestedParameters
    assert (p.ClientHandle, p.SamplingInterval, p.QueueSize) == (3, 1000.0, 3)
    assert p.Filter.DeadbandType == ua.DeadbandType.Percent and p.Filter.DeadbandValue == 2.5
    assert not request(items[2], with_filter=False).RequestedParameters.Filter  # null
    assert not request(items[0]).RequestedParameters.Filter
