"""How the simulator names its Sparkplug devices and metrics (no broker: nothing connects)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.simulator import SimulatorError
from connectors.simulator.sparkplug_side import SparkplugSide, catalog_broker
from schemas.catalog import Catalog
from schemas.sparkplug import DataType


def plant(sparkplug: dict[str, Any]) -> Catalog:
    return Catalog.model_validate({
        "enterprise": "acme", "site": "p1",
        "sources": [{"name": "spb", "protocol": "mqtt", "endpoint": "mqtt://127.0.0.1:1999",
                     "mqtt": {"sparkplug": sparkplug}}],
        "machines": [{"name": "compressor-07", "area": "u", "line": "air", "source": "spb",
                      "tags": [{"name": "discharge_pressure", "unit": "bar"},
                               {"name": "running", "kind": "state"}]}],
    })


def test_shipped_plant_publishes_compressor_02_under_its_tag_names(catalog: Catalog) -> None:
    side = SparkplugSide(catalog, "mqtt://127.0.0.1:1")
    assert catalog_broker(catalog) == "mqtt://127.0.0.1:1883"
    (node,) = side.nodes
    assert (node.group, node.node, node.primary_host) == ("plant1", "utilities-gw", "millstream")
    metrics = node.devices["compressor-02"]
    assert [m.name for m in metrics] == [t.name for t in catalog.machines[3].tags]
    assert {m.name: m.datatype for m in metrics}["running"] == DataType.Boolean
    assert {m.name: m.unit for m in metrics}["discharge_temp"] == "degC"


def test_a_renamed_metric_is_published_under_the_name_the_rule_renames() -> None:
    side = SparkplugSide(plant({"group": "g", "edge_nodes": ["n1"],
                                "rename": {"Discharge Pressure": "discharge_pressure"}}),
                         "mqtt://127.0.0.1:1")
    names = [m.name for m in side.nodes[0].devices["compressor-07"]]
    assert names == ["Discharge Pressure", "running"]


def test_a_tag_rule_the_simulator_cannot_follow_is_refused_with_the_tag() -> None:
    with pytest.raises(SimulatorError, match=r"metric 'discharge_pressure'.*device_tag "
                                             r"'\{node\}-\{device\}/\{metric\}'"):
        SparkplugSide(plant({"group": "g", "device_tag": "{node}-{device}/{metric}"}),
                      "mqtt://127.0.0.1:1")


def test_changed_values_only_once_per_period_and_setpoints_from_dcmd() -> None:
    side = SparkplugSide(plant({"group": "g"}), "mqtt://127.0.0.1:1", period_s=0.2)
    node = side.nodes[0]
    assert node.node == "spb-node"  # no edge_nodes listed: the node is named by the source
    p = "acme/p1/u/air/compressor-07/"

    def due(pressure: float, running: float, ts: int) -> list[dict[str, Any]]:
        got = side.changes({p + "discharge_pressure": pressure, p + "running": running}, ts)
        assert all(edge is node and device == "compressor-07" for edge, device, _ in got)
        return [values for _, _, values in got]

    assert due(8.0, 1.0, 1000) == [{"discharge_pressure": 8.0, "running": True}]
    assert due(8.1, 1.0, 1100) == []  # within the period
    assert due(8.1, 1.0, 1200) == [{"discharge_pressure": 8.1}]  # running did not change
    assert due(8.1, 1.0, 1400) == []  # nothing changed
    assert due(8.1, 0.0, 1600) == [{"running": False}]
    assert node.on_command is not None
    node.on_command("compressor-07", "discharge_pressure", 7.0)
    assert side.commands() == [(p + "discharge_pressure", 7.0)] and side.commands() == []
