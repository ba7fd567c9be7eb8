"""The catalog proposal from a walk: slugs, ISA-95 area/line, kinds, aliases, YAML that loads."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from asyncua import ua
from hypothesis import given
from hypothesis import strategies as st

from connectors.opcua_catalog import (
    PLACEHOLDER,
    namespace_aliases,
    node_text,
    propose,
    render_catalog,
    slug,
    unique,
)
from connectors.opcua_reads import BrowsedVariable
from schemas.catalog import load_catalog
from schemas.opcua import parse_node_ref


def var(name: str, holder: tuple[str, ...], ident: int, *, holder_id: int | None = None,
        dtype: str = "Double", scalar: bool = True, browse_name: str | None = None,
        **kw: object) -> BrowsedVariable:
    v = BrowsedVariable(ua.NodeId(ua.Int32(ident), ua.Int16(2)), name,
                        name if browse_name is None else browse_name, holder,
                        ua.NodeId(ua.String("/".join(holder)) if holder_id is None
                                  else ua.Int32(holder_id), ua.Int16(2)),
                        data_type=dtype, base_type=dtype, scalar=scalar)
    for k, value in kw.items():
        setattr(v, k, value)
    return v


def test_slug_keeps_letters_and_digits_and_joins_the_rest() -> None:
    assert slug("Hall A/Line 3", "-") == "hall-a-line-3"
    assert slug("  Motor.Current (A) ", "_") == "motor_current_a"
    assert slug("Kühler Ölstand", "_") == "kuhler_olstand"
    assert slug("°%", "_", "tag") == "tag"


@given(st.text(max_size=40))
def test_slug_always_fits_the_catalog_patterns(text: str) -> None:
    assert re.fullmatch(r"[a-z0-9_]+", slug(text, "_"))
    assert re.fullmatch(r"[a-z0-9-]+", slug(text, "-"))


def test_unique_adds_a_suffix() -> None:
    taken: set[str] = set()
    assert [unique("temp", taken, "_") for _ in range(3)] == ["temp", "temp_2", "temp_3"]


def test_namespace_aliases_from_the_uris() -> None:
    uris = ["http://opcfoundation.org/UA/", "urn:vendor:plc", "http://vendor.com/UA/Robot/",
            "urn:other:plc", "http://x.com/ns/2", "urn:7"]
    aliases = namespace_aliases(uris, [0, 1, 2, 3, 4, 5, 1])
    assert aliases == {1: "plc", 2: "robot", 3: "plc_2", 4: "ns", 5: "urn"}
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", a) for a in aliases.values())


def test_node_text_for_every_id_type_parses_back() -> None:
    guid = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
    cases = {
        ua.NodeId(ua.Int32(5001), ua.Int16(2)): "nsu=plc;i=5001",
        ua.NodeId(ua.String('"DB1"."Temp"'), ua.Int16(2)): 'nsu=plc;s="DB1"."Temp"',
        ua.NodeId(ua.Guid(str(guid)), ua.Int16(2), ua.NodeIdType.Guid):
            f"nsu=plc;g={guid}",
        ua.NodeId(ua.ByteString(b"\x01\xff"), ua.Int16(2), ua.NodeIdType.ByteString):
            "nsu=plc;b=Af8=",
    }
    for nodeid, text in cases.items():
        assert node_text(nodeid, "plc") == text
        assert parse_node_ref(text).namespace == "plc"
    assert node_text(ua.NodeId(ua.Int32(2258)), None) == "i=2258"


def test_area_and_line_are_the_two_folders_above_the_machine() -> None:
    machines = propose([
        var("Temp", ("Factory", "Hall A", "Line 3", "Filler 2"), 1),
        var("Temp", ("Boiler House", "Boiler"), 2),
        var("Temp", ("Pump",), 3),
    ], {})
    got = [(m.name, m.area, m.line) for m in machines]
    assert got == [("filler-2", "hall-a", "line-3"), ("boiler", "boiler-house", PLACEHOLDER),
                   ("pump", PLACEHOLDER, PLACEHOLDER)]


def test_same_names_get_suffixes_and_descriptions_keep_the_originals() -> None:
    machines = propose([
        var("Axis 1 Temp", ("Cell 4", "Robot 7"), 1, holder_id=10),
        var("Axis-1 Temp", ("Cell 4", "Robot 7"), 2, holder_id=10),
        var("Axis 1 Temp", ("Cell 5", "Robot 7"), 3, holder_id=11, browse_name="AX1_T"),
    ], {2: "dev"})
    assert [m.name for m in machines] == ["robot-7", "robot-7-2"]
    assert [t.name for t in machines[0].tags] == ["axis_1_temp", "axis_1_temp_2"]
    assert [t.description for t in machines[0].tags] == ["Axis 1 Temp", "Axis-1 Temp"]
    assert machines[1].tags[0].description == "Axis 1 Temp (AX1_T)"
    assert machines[1].tags[0].node == "nsu=dev;i=3"


def test_kind_from_the_data_type() -> None:
    holder = ("Line", "M")
    machines = propose([
        var("On", holder, 1, dtype="Boolean"), var("Code", holder, 2, dtype="String"),
        var("Count", holder, 3, dtype="Int16"), var("Mode", holder, 4, dtype="Enumeration"),
        var("Trend", holder, 5, scalar=False), var("Blob", holder, 6, dtype="ByteString"),
    ], {})
    tags = {t.name: t for t in machines[0].tags}
    assert {n: t.kind for n, t in tags.items() if not t.skipped} == {
        "on": "state", "code": "text", "count": "analog", "mode": "state"}
    assert "array of Double" in tags["trend"].skipped
    assert "ByteString" in tags["blob"].skipped


def test_rendered_catalog_loads_and_quotes_what_yaml_would_misread(tmp_path: Path) -> None:
    holder = ("Area 1", "Line 1", "Yes")
    machines = propose([
        var("on", holder, 1, dtype="Boolean", writable=True),
        var("Temp", holder, 2, unit="°C", low=-20.5, high=120.0),
        var("1e3", holder, 3),
        var("Trend", ("Area 1", "Line 1", "Null"), 4, scalar=False),
    ], {2: "plc"})
    text = render_catalog(machines, endpoint="opc.tcp://plc:4840/", source="plc-1",
                          namespaces={"plc": "urn:vendor:plc"}, enterprise="acme",
                          site="no", partial="stopped early")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    catalog = load_catalog(path)
    assert catalog.site == "no" and text.startswith("# Proposed by")
    assert "# PARTIAL: stopped early" in text
    info = catalog.info("yes/temp")
    assert (info.spec.unit, info.spec.low, info.spec.high) == ("°C", -20.5, 120.0)
    assert catalog.info("yes/on").spec.kind == "state"
    assert catalog.info("yes/1e3").spec.node == "nsu=plc;i=3"
    assert catalog.machines[1].name == "null" and catalog.machines[1].tags == []
    assert "# - {name: trend" in text and "writable" in text
    tag_lines = [line for line in text.splitlines() if line.startswith("      - {")]
    assert len(tag_lines) == 3  # one flow mapping per tag line
