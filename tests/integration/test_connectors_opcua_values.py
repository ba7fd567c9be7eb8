"""Bad input from a real asyncua server: BAD readings with the reason, counted, no crash."""

from __future__ import annotations

import asyncio
import math
import warnings

import pytest
from asyncua import Server, ua

from connectors.opcua import OpcUaSource
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog
from schemas.readings import Quality, Reading
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration

URI = "urn:test:bad"
# tag -> (server value, variant type, catalog kind)
VALUES: dict[str, tuple[object, ua.VariantType, str]] = {
    "number": (21.5, ua.VariantType.Double, "analog"),
    "flag": (True, ua.VariantType.Boolean, "state"),
    "count": (7, ua.VariantType.Int32, "counter"),
    "word": ("12.5", ua.VariantType.String, "analog"),
    "structure": (ua.Range(0.0, 10.0), ua.VariantType.ExtensionObject, "analog"),
    "array": ([1.0, 2.0, 3.0], ua.VariantType.Double, "analog"),
    "nan": (math.nan, ua.VariantType.Double, "analog"),
    "inf": (math.inf, ua.VariantType.Double, "analog"),
    "mode": ("AUTO", ua.VariantType.String, "text"),
    "doomed": (1.0, ua.VariantType.Double, "analog"),
    "sensor": (3.0, ua.VariantType.Double, "analog"),
}


def catalog_for(endpoint: str) -> Catalog:
    tags = [{"name": n, "kind": kind, "node": f"nsu={URI};s={n}"}
            for n, (_, _, kind) in VALUES.items()]
    tags += [{"name": "absent", "node": f"nsu={URI};s=absent"},
             {"name": "lost_path", "browse_path": "Bad/nowhere"}]
    return Catalog.model_validate({
        "enterprise": "e", "site": "s",
        "sources": [{"name": "plc", "protocol": "opcua", "endpoint": endpoint,
                     "interval_ms": 100, "namespace": URI}],
        "machines": [{"name": "m", "area": "a", "line": "l", "source": "plc", "tags": tags}],
    })


def test_opcua_bad_values_are_bad_readings_with_a_reason() -> None:
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/bad/"
    catalog = catalog_for(endpoint)
    pub = MemoryPublisher()
    made: list[OpcUaSource] = []

    async def go() -> None:
        server = Server()
        await server.init()
        server.set_endpoint(endpoint)
        ns = await server.register_namespace(URI)
        folder = await server.nodes.objects.add_folder(ua.NodeId(ua.String("Bad"), ua.Int16(ns)),
                                                       ua.QualifiedName("Bad", ns))
        nodes = {}
        for name, (value, vtype, _) in VALUES.items():
            nodes[name] = await folder.add_variable(
                ua.NodeId(ua.String(name), ua.Int16(ns)), ua.QualifiedName(name, ns),
                ua.Variant(value, vtype))
        await server.start()
        try:
            source = OpcUaSource(catalog, catalog.source("plc"), pub, frame_ms=50, audit_s=0.5)
            made.append(source)
            stop = asyncio.Event()
            task = asyncio.create_task(source.serve(stop))
            await asyncio.sleep(1.5)
            await server.delete_nodes([nodes["doomed"]])
            await nodes["sensor"].write_value(ua.DataValue(
                ua.Variant(3.5, ua.VariantType.Double),
                ua.StatusCode(ua.UInt32(ua.StatusCodes.UncertainLastUsableValue))))
            await asyncio.sleep(0.3)
            await nodes["sensor"].write_value(ua.DataValue(
                StatusCode=ua.StatusCode(ua.UInt32(ua.StatusCodes.BadSensorFailure))))
            await asyncio.sleep(1.5)
            stop.set()
            await task
        finally:
            await server.stop()

    with warnings.catch_warnings():  # asyncua's delete_nodes forgets to await a callback,
        warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
        asyncio.run(go())  # so the deleted item just goes silent: the node audit finds it
    source = made[0]
    readings = [r for f in pub.sent for r in f.readings()]
    assert [r.seq for r in readings] == list(range(1, len(readings) + 1))
    by_tag: dict[str, list[Reading]] = {}
    for r in readings:
        by_tag.setdefault(r.tag.rsplit("/", 1)[1], []).append(r)

    def only(name: str) -> Reading:
        assert len(by_tag[name]) == 1, by_tag[name]
        return by_tag[name][0]

    def bad(name: str, status: str) -> None:
        r = only(name)
        assert (r.value, r.quality, r.status) == (None, Quality.BAD, status), r

    assert (only("number").value, only("number").quality) == (21.5, Quality.GOOD)
    assert only("number").server_ts is not None and only("number").status is None
    assert only("flag").value == 1.0 and only("count").value == 7.0
    mode = only("mode")
    assert (mode.value, mode.text, mode.quality) == (None, "AUTO", Quality.GOOD)
    bad("word", "not a number: a string on a numeric tag")
    bad("structure", "not a number: a Range on a numeric tag")
    bad("array", "not a number: an array of 3 on a numeric tag")
    bad("nan", "not finite: nan")
    bad("inf", "not finite: inf")
    bad("absent", "BadNodeIdUnknown: no node ns=2;s=absent at the server")
    bad("lost_path", "no node at its browse_path on the server")
    doomed = by_tag["doomed"]  # its value, then BAD once the node is gone
    assert [r.value for r in doomed] == [1.0, None]
    assert doomed[1].status is not None and doomed[1].status.startswith("BadNodeIdUnknown: node")
    sensor = [(r.value, r.quality, r.status) for r in by_tag["sensor"]]
    assert sensor == [(3.0, Quality.GOOD, None),
                      (3.5, Quality.UNCERTAIN, "UncertainLastUsableValue"),
                      (None, Quality.BAD, "BadSensorFailure")]
    assert source.bad_values == 9 and set(source.missing) == {
        r.tag for r in readings if r.tag.endswith(("absent", "lost_path"))}
    assert source.errors >= 2 and source.reconnects == 0  # reported, and no crash
