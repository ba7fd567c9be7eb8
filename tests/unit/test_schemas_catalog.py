"""The plant catalog: the shipped plant is valid; mistakes give errors that name them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schemas.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from schemas.exceptions import CatalogError


def test_shipped_plant_has_four_machines_of_ten_or_eleven_tags_over_three_protocols(
        catalog: Catalog) -> None:
    assert len(catalog.machines) == 4
    tags = catalog.tags()
    # ten each, and a reject counter on the two machines that make parts
    assert len(tags) == 42 and [len(m.tags) for m in catalog.machines] == [11, 11, 10, 10]
    assert all(p.count("/") == 5 for p in tags)  # enterprise/site/area/line/machine/tag
    assert {s.protocol for s in catalog.sources} == {"opcua", "modbus", "mqtt"}
    assert any(t.spec.writable for t in tags.values())
    # the MQTT source bridges a Sparkplug B edge node; its machine's tags name no device ref
    mqtt = next(s for s in catalog.sources if s.protocol == "mqtt")
    assert mqtt.mqtt is not None and mqtt.mqtt.sparkplug is not None
    assert [m.name for m in catalog.machines_of(mqtt.name)] == ["compressor-02"]
    assert all(t.node is None and t.modbus is None for t in catalog.machines[3].tags)


def test_resolve_short_and_full_names(catalog: Catalog) -> None:
    full = catalog.resolve("press-01/pressure_sp")
    assert full == "acme/plant1/forming/line2/press-01/pressure_sp"
    assert catalog.resolve(full) == full
    with pytest.raises(CatalogError, match="not in the catalog"):
        catalog.resolve("press-01/nope")


def test_modbus_registers_do_not_overlap(catalog: Catalog) -> None:
    for m in catalog.machines:
        used: dict[tuple[str, int], str] = {}
        for t in m.tags:
            if t.modbus is None:
                continue
            for i in range(t.modbus.width):
                slot = (t.modbus.table, t.modbus.address + i)
                assert slot not in used, f"{m.name}/{t.name} overlaps {used[slot]}"
                used[slot] = t.name


def _write(tmp_path: Path, doc: object) -> Path:
    p = tmp_path / "plant.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_missing_file_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="MILLSTREAM_CATALOG"):
        load_catalog(tmp_path / "missing.yaml")


def test_rule_on_a_non_setpoint_is_refused(tmp_path: Path, catalog: Catalog) -> None:
    doc = catalog.model_dump(by_alias=True)
    doc["rules"][0]["action"]["setpoint"] = "cnc-01/spindle_temp"
    with pytest.raises(CatalogError, match="is not a setpoint"):
        load_catalog(_write(tmp_path, doc))


def test_modbus_tag_without_register_is_refused(tmp_path: Path, catalog: Catalog) -> None:
    doc = catalog.model_dump(by_alias=True)
    press = next(m for m in doc["machines"] if m["name"] == "press-01")
    press["tags"][0]["register"] = None
    with pytest.raises(CatalogError, match="needs a 'register'"):
        load_catalog(_write(tmp_path, doc))


def test_unknown_source_is_refused(tmp_path: Path, catalog: Catalog) -> None:
    doc = catalog.model_dump(by_alias=True)
    doc["machines"][0]["source"] = "nowhere"
    with pytest.raises(CatalogError, match="unknown source 'nowhere'"):
        load_catalog(_write(tmp_path, doc))


def test_overlapping_modbus_registers_are_refused(tmp_path: Path, catalog: Catalog) -> None:
    doc = catalog.model_dump(by_alias=True)
    press = next(m for m in doc["machines"] if m["name"] == "press-01")
    press["tags"][2]["register"]["address"] = 1  # oil_temp float32 at 1-2 overlaps pressure 0-1
    with pytest.raises(CatalogError, match="overlap at unit 1 input address 1"):
        load_catalog(_write(tmp_path, doc))


@pytest.mark.parametrize(("register", "message"), [
    ({"table": "input", "address": 65535, "type": "float32"}, "runs past address 65535"),
    ({"table": "coil", "address": 3, "type": "uint16"}, "tables hold single bits"),
])
def test_impossible_registers_are_refused(
        tmp_path: Path, catalog: Catalog, register: dict[str, object], message: str) -> None:
    doc = catalog.model_dump(by_alias=True)
    press = next(m for m in doc["machines"] if m["name"] == "press-01")
    press["tags"][0]["register"] = register
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, doc))


def test_invalid_entry_names_the_line_the_path_and_the_value(tmp_path: Path) -> None:
    text = DEFAULT_CATALOG.read_text().replace(
        "register: {table: input, address: 2}", "register: {table: input, address: 2, "
        "order: XYZW}")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "XYZW" in ln)
    path = tmp_path / "plant.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    msg = str(err.value)
    assert f"line {line}, machines[1].tags[2].register.order = 'XYZW'" in msg
    assert "'ABCD', 'BADC', 'CDAB' or 'DCBA'" in msg and str(path) in msg


@pytest.mark.parametrize(("tag", "message"), [
    ({"name": "t", "node": "ns=x;i=5"}, "ns= takes a namespace index"),
    ({"name": "t", "node": "Temperature"}, "is not an OPC UA node id"),
    ({"name": "t", "node": "ns=2;i=5", "browse_path": "A/B"}, "not both"),
    ({"name": "t"}, "needs a 'node'"),
    ({"name": "t", "browse_path": "A//B"}, "empty segment"),
])
def test_opcua_tags_must_name_their_node(tmp_path: Path, catalog: Catalog,
                                         tag: dict[str, object], message: str) -> None:
    doc = catalog.model_dump(by_alias=True, exclude_none=True)
    doc["machines"][0]["tags"][0] = tag
    with pytest.raises(CatalogError, match=message):
        load_catalog(_write(tmp_path, doc))
