"""Vendor CSV register maps: loose headers, Modicon addresses, PLC type names, errors by line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from schemas.catalog import load_catalog
from schemas.exceptions import CatalogError
from schemas.register_csv import read_register_csv, slug

DATA = Path(__file__).resolve().parents[1] / "data"


def _catalog(tmp_path: Path, csv_text: str, extra_tags: list[dict[str, object]] | None = None
             ) -> Path:
    (tmp_path / "map.csv").write_text(csv_text)
    doc = {
        "enterprise": "e", "site": "s",
        "sources": [{"name": "plc", "protocol": "modbus", "endpoint": "127.0.0.1:502"}],
        "machines": [{"name": "pump-01", "area": "a", "line": "l", "source": "plc",
                      "register_map": "map.csv", "tags": extra_tags or []}],
    }
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_vendor_map_becomes_catalog_tags() -> None:
    rows = dict((e["name"], (line, e)) for line, e in read_register_csv(DATA / "vendor_map.csv"))
    assert rows["oil_temp"][0] == 3  # file line numbers, comment and header counted
    oil = rows["oil_temp"][1]["register"]
    assert (oil["table"], oil["address"], oil["type"], oil["order"]) == (
        "input", 0, "float32", "ABCD")
    assert rows["pressure"][1]["register"]["order"] == "CDAB"
    assert rows["stroke_counter"][1]["register"]["order"] == "DCBA"
    assert rows["line_voltage"][1]["register"]["scale"] == 0.1  # decimal comma
    assert rows["pressure_sp"][1]["kind"] == "setpoint"  # RW access
    assert rows["running"][1]["register"] == {"table": "discrete", "address": 0, "type": "bool"}
    assert rows["recipe"][1]["kind"] == "text"


def test_catalog_loads_a_register_map_relative_to_itself(tmp_path: Path) -> None:
    text = (DATA / "vendor_map.csv").read_text()
    catalog = load_catalog(_catalog(tmp_path, text, [
        {"name": "alarm_word", "register": {"table": "holding", "address": 20, "type": "uint16"}}
    ]))
    machine = catalog.machines[0]
    assert [t.name for t in machine.tags] == [
        "alarm_word", "oil_temp", "pressure", "stroke_counter", "line_voltage", "pressure_sp",
        "running", "recipe"]
    recipe = catalog.info("pump-01/recipe").spec.modbus
    assert recipe is not None and (recipe.type, recipe.length, recipe.width) == ("string", 8, 4)


@pytest.mark.parametrize(("csv_text", "message"), [
    ("name,table,address\nt1,holding,12x\n", r"map.csv line 2: address '12x' is not a whole"),
    ("name,address\nt1,12\n", r"line 2: address 12 has no table"),
    ("tag,address,type\nt1,40001,float33\n", r"line 2 \(machine 'pump-01'\) is invalid: "
                                             r"register.type"),
    ("name,table,address\nA b,holding,1\na-b,holding,3\n", r"line 3: tag name 'a_b'.*line 2"),
    ("name,type\nt1,int16\n", r"no 'address' column"),
    ("name,table,address,scale\nt1,hr,1,x\n", r"line 2: scale 'x' is not a number"),
])
def test_bad_rows_name_the_file_and_line(tmp_path: Path, csv_text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        load_catalog(_catalog(tmp_path, csv_text))


def test_overlap_between_csv_and_yaml_is_refused(tmp_path: Path) -> None:
    path = _catalog(tmp_path, "name,address,type\nflow,40001,float32\n",
                    [{"name": "level", "register": {"table": "holding", "address": 1}}])
    with pytest.raises(CatalogError,
                       match="pump-01/level and pump-01/flow overlap at unit 1 holding address 1"):
        load_catalog(path)


def test_missing_map_file_says_where_it_looked(tmp_path: Path) -> None:
    path = _catalog(tmp_path, "name,address\n")
    (tmp_path / "map.csv").unlink()
    with pytest.raises(CatalogError, match=r"cannot read the register map .*map.csv"):
        load_catalog(path)


def test_slug() -> None:
    assert slug("Oil Temp. (°C)") == "oil_temp_c"
    assert slug("Press 1", "-") == "press-1"
    assert slug("***") == "tag"
