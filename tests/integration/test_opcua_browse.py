"""`millstream browse opcua` against servers laid out unlike the simulator (asyncua, in
process): the catalog it writes loads, says what the server says, and names nodes that
resolve to the same variables; paging with continuation points; thousands of nodes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import Client, Server, ua

from connectors.opcua_browse import Walker
from connectors.opcua_discover import browse_opcua, catalog_text
from millstream import cli
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog, load_catalog
from schemas.opcua_nodes import resolve_nodes
from tests.support.opcua_bulk import add_bulk
from tests.support.opcua_interop import InteropLayout, interop_server, paging_of
from tests.support.opcua_paging import enable_paging

pytestmark = pytest.mark.integration

MACHINES = {  # name: (area, line, the interop machine's display name)
    "filler-2": ("hall-a", "line-3", "Filler 2"),
    "capper-1": ("hall-a", "line-3", "Capper 1"),
    "robot-7": ("line-1", "cell-4", "Robot 7"),
    "robot-7-2": ("line-1", "cell-5", "Robot 7"),
    "boiler": ("boiler-house", "unassigned", "Boiler"),
}


def _by_node(catalog: Catalog) -> dict[str, tuple[str, str]]:
    """Each tag's node with its alias replaced by the URI -> (path, machine name)."""
    aliases = catalog.sources[0].namespaces
    out = {}
    for path, info in catalog.tags().items():
        node = str(info.spec.node)
        alias = node.removeprefix("nsu=").split(";", 1)[0]
        out[node.replace(f"nsu={alias};", f"nsu={aliases[alias]};", 1)] = (path, info.machine.name)
    return out


def test_catalog_loads_matches_the_server_and_resolves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "catalog.yaml"

    async def go() -> tuple[InteropLayout, dict[str, ua.NodeId], dict[str, str]]:
        async with interop_server(free_port()) as (_, layout):
            code = await asyncio.to_thread(cli.main, [
                "browse", "opcua", layout.endpoint, "--out", str(out), "--enterprise", "acme",
                "--site", "plant9", "--source-name", "line-plc"])
            assert code == 0
            catalog = load_catalog(out)
            async with Client(layout.endpoint) as client:
                found, missing = await resolve_nodes(
                    client, catalog.source("line-plc"), layout.endpoint,
                    [(p, i.spec) for p, i in catalog.tags().items()])
            return layout, found, missing

    layout, found, missing = asyncio.run(go())
    err = capsys.readouterr().err
    assert "nodes/s" in err and "15 variables in 5 machines" in err  # progress on stderr
    catalog = load_catalog(out)
    assert (catalog.enterprise, catalog.site) == ("acme", "plant9")
    assert set(catalog.sources[0].namespaces.values()) == {"urn:vendor:plc", "urn:vendor:devices"}
    assert {m.name: (m.area, m.line, m.description.rsplit("/", 1)[-1])
            for m in catalog.machines} == MACHINES
    tags = _by_node(catalog)
    assert len(tags) == len(layout.variables)
    for v in layout.variables:
        path, machine = tags[v.node]
        spec = catalog.info(path).spec
        assert MACHINES[machine][2] == v.path[-2]
        assert spec.description.startswith(v.path[-1])
        assert (spec.unit or None, spec.low, spec.high) == (v.unit, v.low, v.high)
        kind = {"Boolean": "state", "String": "text"}.get(v.data_type, "analog")
        assert spec.kind == kind, path
        assert found[path] == v.nodeid, path
    assert not missing
    assert catalog.info("filler-2/fill_level_sp").spec.description == "Fill Level SP (FL_SP)"
    assert "# Double, writable" in out.read_text()


def test_walk_follows_continuation_points() -> None:
    async def go() -> None:
        # the client asks for 2 references per node; then the server caps at 2 itself and
        # keeps one continuation point open at a time, refusing the rest
        for max_refs, server_cap, points in ((2, None, 1000), (1000, 2, 1)):
            async with interop_server(free_port(), max_refs=server_cap,
                                      max_points=points) as (server, layout):
                async with Client(layout.endpoint) as client:
                    walk = await Walker(client, max_refs=max_refs).run()
                paging = paging_of(server)
                assert paging.issued >= 5
                assert walk.continuation_points == paging.issued
                assert {v.nodeid for v in walk.variables} == {v.nodeid for v in layout.variables}
                assert walk.errors == 0
                if points == 1:
                    assert paging.refused > 0  # BadNoContinuationPoints, browsed again

    asyncio.run(go())


async def _bulk_server(port: int, count: int) -> Server:
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bulk/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    await add_bulk(server, count)
    enable_paging(server, max_refs=8)
    await server.start()
    return server


def test_thousands_of_variables_are_all_walked(tmp_path: Path) -> None:
    async def go() -> tuple[int, str, int]:
        port = free_port()
        server = await _bulk_server(port, 3000)
        try:
            url = f"opc.tcp://127.0.0.1:{port}/bulk/"
            walk = await browse_opcua(url, max_refs=1000)
            text = catalog_text(walk, url, source=None, enterprise="e", site="s",
                                max_nodes=None)
            return len(walk.variables), text, walk.continuation_points
        finally:
            await server.stop()

    count, text, points = asyncio.run(go())
    assert count == 3000
    assert points > 0  # the server pages at 8 references whatever the client asks
    (tmp_path / "bulk.yaml").write_text(text)
    catalog = load_catalog(tmp_path / "bulk.yaml")
    assert len(catalog.tags()) == 3000 and len(catalog.machines) == 300
    assert catalog.sources[0].name == "opcua-127-0-0-1"
    analog = [i.spec for i in catalog.tags().values() if i.spec.unit]
    assert len(analog) == 300 and all(s.low == 0 and s.high == 100 for s in analog)


def test_root_and_max_nodes_limit_the_walk(tmp_path: Path) -> None:
    async def go() -> None:
        async with interop_server(free_port()) as (_, layout):
            by_path = await browse_opcua(layout.endpoint, root="Factory/Hall A")
            by_id = await browse_opcua(layout.endpoint, root="nsu=urn:vendor:plc;s=HallA")
            assert [v.nodeid for v in by_id.variables] == [v.nodeid for v in by_path.variables]
            holders = {v.holder for v in by_path.variables}
            assert {("Line 3", "Filler 2"), ("Line 3", "Capper 1")} <= holders
            # Line 3 organizes Factory (the cycle), so Hall B is reached through it; the
            # Boiler House, beside Factory under Objects, is not
            assert all(h[0] == "Line 3" for h in holders)
            assert ("Line 3", "Factory", "Hall B", "Line 1", "Cell 4", "Robot 7") in holders
            small = await browse_opcua(layout.endpoint, max_nodes=8)
            assert small.truncated and small.visited == 8
            text = catalog_text(small, layout.endpoint, source="s", enterprise="e", site="s",
                                max_nodes=8)
            assert "# PARTIAL: stopped after --max-nodes 8" in text
            (tmp_path / "small.yaml").write_text(text)
            load_catalog(tmp_path / "small.yaml")

    asyncio.run(go())


def test_unknown_root_names_what_is_there(capsys: pytest.CaptureFixture[str]) -> None:
    async def go() -> int:
        async with interop_server(free_port()) as (_, layout):
            return await asyncio.to_thread(cli.main, [
                "browse", "opcua", layout.endpoint, "--root", "Factory/Hall C"])

    assert asyncio.run(go()) == 2
    err = capsys.readouterr().err
    assert "'Hall C'" in err and "Hall A" in err and "Hall B" in err
