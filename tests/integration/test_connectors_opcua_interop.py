"""The OPC-UA connector against a server laid out unlike the simulator: numeric, string,
GUID and opaque node ids in two namespaces (by URI and by alias), nested folders and
browse paths, AnalogItems with EURange, and monitored items set per tag."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemService

from connectors.opcua import OpcUaSource
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog
from schemas.readings import Quality, Reading
from tests.support.opcua_interop import DEVICES, PLC, InteropLayout, interop_server
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration

PERCENT = {"kind": "percent", "value": 10.0}


def catalog_for(layout: InteropLayout) -> Catalog:
    v = layout.variable
    dev = layout.variable("Torque").node.replace(f"nsu={DEVICES};", "nsu=dev;")  # by alias
    tags: list[dict[str, Any]] = [
        {"name": "temp", "node": v("Temp").node,  # s="DB1"."Temp", AnalogItem 0..120
         "monitoring": {"deadband": PERCENT, "sampling_ms": 50, "queue_size": 5}},
        {"name": "pressure", "node": v("Pressure").node,  # numeric id, Float
         "monitoring": {"deadband": {"kind": "absolute", "value": 0.5}}},
        {"name": "running", "kind": "state", "node": v("Running").node},  # GUID
        {"name": "bottles", "kind": "counter", "node": v("Bottle Count").node},  # opaque
        {"name": "batch", "kind": "text", "node": v("Batch.Code").node},
        {"name": "torque", "node": dev, "monitoring": {"publishing_ms": 500}},
        {"name": "current", "browse_path": "Factory/Hall A/Line 3/dev:Capper 1/dev:Motor.Current"},
        {"name": "axis_temp", "browse_path":  # five levels down, no EURange: percent refused
         "Factory/Hall B/dev:Line 1/dev:Cell 4/dev:Robot 7/dev:Axis-1 Temp",
         "monitoring": {"deadband": PERCENT}},
        {"name": "flame", "kind": "state",
         "browse_path": "dev:Boiler House/dev:Boiler/dev:Flame On"},
    ]
    return Catalog.model_validate({
        "enterprise": "e", "site": "s",
        "sources": [{"name": "plc", "protocol": "opcua", "endpoint": layout.endpoint,
                     "interval_ms": 100, "namespace": PLC,
                     "namespaces": {"plc": PLC, "dev": DEVICES}}],
        "machines": [{"name": "m", "area": "a", "line": "l", "source": "plc", "tags": tags}],
    })


def strict_percent_deadband(monkeypatch: pytest.MonkeyPatch) -> dict[ua.NodeId, Any]:
    """Make the asyncua server refuse a percent deadband on a variable without an EURange
    (as OPC UA Part 8 says; asyncua accepts any); record what each item asked for."""
    seen: dict[ua.NodeId, Any] = {}
    original = MonitoredItemService._create_data_change_monitored_item

    async def create(self: MonitoredItemService, params: ua.MonitoredItemCreateRequest
                     ) -> ua.MonitoredItemCreateResult:
        node, wanted = params.ItemToMonitor.NodeId, params.RequestedParameters
        # by its fields: the server's decoder may hold another DataChangeFilter class
        flt = wanted.Filter if hasattr(wanted.Filter, "DeadbandType") else None
        seen[node] = (self.isub.data.RevisedPublishingInterval, wanted.SamplingInterval,
                      wanted.QueueSize, flt and (flt.DeadbandType, flt.DeadbandValue))
        if flt is not None and flt.DeadbandType == ua.DeadbandType.Percent:
            data = self.aspace.get(node)
            if data is None or not any(r.BrowseName.Name == "EURange" for r in data.references):
                return ua.MonitoredItemCreateResult(StatusCode=ua.StatusCode(
                    ua.UInt32(ua.StatusCodes.BadDeadbandFilterInvalid)))
        return await original(self, params)

    monkeypatch.setattr(MonitoredItemService, "_create_data_change_monitored_item", create)
    return seen


def test_opcua_interop_layout_and_monitoring(monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    seen = strict_percent_deadband(monkeypatch)
    pub = MemoryPublisher()
    made: list[tuple[OpcUaSource, InteropLayout]] = []

    async def go() -> None:
        async with interop_server(free_port()) as (server, layout):
            catalog = catalog_for(layout)
            source = OpcUaSource(catalog, catalog.source("plc"), pub, frame_ms=50)
            made.append((source, layout))
            stop = asyncio.Event()
            task = asyncio.create_task(source.serve(stop))
            await asyncio.sleep(1.0)
            pressure = server.get_node(layout.variable("Pressure").nodeid)
            for value in (2.6, 2.7, 3.5):  # 0.1, 0.1, then 0.8 from the previous value
                await pressure.write_value(ua.Variant(value, ua.VariantType.Float))
                await asyncio.sleep(0.25)
            await asyncio.sleep(0.5)
            stop.set()
            await task

    asyncio.run(go())
    source, layout = made[0]
    readings = [r for f in pub.sent for r in f.readings()]
    by_tag: dict[str, list[Reading]] = {}
    for r in readings:
        by_tag.setdefault(r.tag.rsplit("/", 1)[1], []).append(r)
    first = {name: rs[0] for name, rs in by_tag.items()}
    assert set(first) == {path.rsplit("/", 1)[1] for path in source.tags}
    assert all(r.quality is Quality.GOOD for r in readings), readings
    assert first["temp"].value == 21.5 and first["running"].value == 1.0
    assert first["bottles"].value == 42.0 and first["batch"].text == "B-1001"
    assert first["torque"].value == 12.0 and first["current"].value == pytest.approx(3.2)
    assert first["axis_temp"].value == 36.0 and first["flame"].value == 1.0
    # the absolute deadband let only the change beyond 0.5 through
    assert [r.value for r in by_tag["pressure"]] == pytest.approx([2.5, 3.5])
    # per-tag settings reached the server; two publishing intervals, two subscriptions
    temp, torque = layout.variable("Temp").nodeid, layout.variable("Torque").nodeid
    assert seen[temp] == (100.0, 50.0, 5, (ua.DeadbandType.Percent, 10.0))
    assert seen[torque] == (500.0, 100.0, 6, None)  # queue: every sample of one publish
    # the refused percent deadband: reported for its tag, loudly, and monitored without it
    axis = next(p for p in source.tags if p.endswith("axis_temp"))
    assert source.unfiltered == {axis: "BadDeadbandFilterInvalid"}
    assert source.errors == 1 and "refused the deadband of " + axis in str(source.last_error)
    assert [r.getMessage() for r in caplog.records].count(str(source.last_error)) == 1
