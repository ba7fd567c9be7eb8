"""The dashboard's HTTP side in-process (aiohttp's test server; no Kafka is contacted)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from millstream.dashboard.history import (
    MINUTE_MAX_MS,
    RAW_MAX_MS,
    HistoryError,
    HistoryRequest,
    resolution_for,
    series_sql,
)
from millstream.dashboard.messages import Kind
from millstream.dashboard.server import ACTION_HEADER, make_app, shown_url
from millstream.dashboard.service import Dashboard, DashboardConfig
from millstream.demo import _dashboard_port
from millstream.settings import Settings
from schemas.catalog import Catalog
from schemas.topics import Topics
from tests.support.twin_records import alarm_record, twin_record

CNC = "acme/plant1/machining/line1/cnc-01"


def _dashboard(catalog: Catalog) -> Dashboard:
    # a port nothing listens on: /readyz must say Kafka is away, nothing else touches it
    return Dashboard(catalog, DashboardConfig(bootstrap="127.0.0.1:9", kafka_config={},
                                              topics=Topics("t"), dsn="chdb:///nowhere"))


def _run(catalog: Catalog, body: Callable[[TestClient[Any, Any], Dashboard], Awaitable[None]],
         loopback: bool = True, trust_forwarded: bool = False) -> None:
    async def main() -> None:
        dash = _dashboard(catalog)
        app = make_app(dash, loopback=loopback, trust_forwarded=trust_forwarded)
        async with TestClient(TestServer(app)) as client:
            await body(client, dash)
    asyncio.run(main())


def test_plant_tree_config_and_security_headers(catalog: Catalog) -> None:
    async def body(client: TestClient[Any, Any], dash: Dashboard) -> None:
        resp = await client.get("/api/plant")
        plant = await resp.json()
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        areas = {a["name"]: [ln["name"] for ln in a["lines"]] for a in plant["areas"]}
        assert areas == {"machining": ["line1"], "forming": ["line2"], "utilities": ["air"]}
        cnc = plant["areas"][0]["lines"][0]["machines"][0]
        temp = next(t for t in cnc["tags"] if t["name"] == "spindle_temp")
        assert temp == {"name": "spindle_temp", "path": f"{CNC}/spindle_temp", "unit": "degC",
                        "kind": "analog", "low": 20.0, "high": 85.0}
        config = await (await client.get("/api/config")).json()
        assert config["alarm_actions"] is True  # the alarms stage is part of millstream
        assert config["trend_window_ms"] == 1000
        assert config["topics"]["twin"] == "t.twin"
        page = await client.get("/")
        assert "uPlot.iife.min.js" in await page.text()
        lib = await client.get("/static/vendor/uplot/uPlot.iife.min.js")
        assert lib.status == 200 and (await lib.read()).startswith(b"/*! https://github.com/")
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert "Kafka at 127.0.0.1:9 did not answer" in (await ready.json())["reason"]
    _run(catalog, body)


def test_loopback_answers_only_loopback_names_and_writes_need_the_header(
        catalog: Catalog) -> None:
    async def body(client: TestClient[Any, Any], dash: Dashboard) -> None:
        rebound = await client.get("/api/plant", headers={"Host": "attacker.example"})
        assert rebound.status == 421
        assert "bound to loopback" in (await rebound.json())["error"]
        assert (await client.get("/api/plant", headers={"Host": "localhost:8080"})).status == 200
        url = f"/api/alarms/{'a1'}/ack"
        assert (await client.post(url, json={})).status == 403  # no header: a cross-site form
        cross = await client.post(url, json={}, headers={ACTION_HEADER: "1",
                                                         "Origin": "http://evil.example"})
        assert cross.status == 403
        ours = await client.post(url, json={}, headers={ACTION_HEADER: "1"})
        assert ours.status == 404  # allowed through, but no alarm a1 is open
        assert "is not open on this dashboard" in (await ours.json())["error"]
    _run(catalog, body)


def _behind_tls_proxy(trust: bool) -> Callable[[TestClient[Any, Any], Dashboard],
                                                 Awaitable[None]]:
    async def body(client: TestClient[Any, Any], dash: Dashboard) -> None:
        url = "/api/alarms/a1/ack"
        proxied = {ACTION_HEADER: "1", "Host": "dash.plant.example",
                   "Origin": "https://dash.plant.example", "X-Forwarded-Proto": "https"}
        # 404: past the origin check, there is no alarm a1; 403: refused by it
        assert (await client.post(url, json={}, headers=proxied)).status == (
            404 if trust else 403)
        forged = {**proxied, "Origin": "https://evil.example"}
        assert (await client.post(url, json={}, headers=forged)).status == 403
        renamed = {**proxied, "Host": "dash:8080", "X-Forwarded-Host": "dash.plant.example"}
        assert (await client.post(url, json={}, headers=renamed)).status == (
            404 if trust else 403)
    return body


def test_behind_a_tls_proxy_writes_pass_only_when_its_headers_are_trusted(
        catalog: Catalog) -> None:
    _run(catalog, _behind_tls_proxy(trust=False), loopback=False)
    _run(catalog, _behind_tls_proxy(trust=True), loopback=False, trust_forwarded=True)


def test_bound_elsewhere_any_host_name_is_served(catalog: Catalog) -> None:
    async def body(client: TestClient[Any, Any], dash: Dashboard) -> None:
        resp = await client.get("/api/config", headers={"Host": "dashboard.plant.example"})
        assert resp.status == 200
    _run(catalog, body, loopback=False)


def test_the_event_stream_starts_with_a_snapshot_then_sends_changes(catalog: Catalog) -> None:
    async def body(client: TestClient[Any, Any], dash: Dashboard) -> None:
        twin = twin_record(catalog, "cnc-01", {"spindle_temp": {"value": 61.0}})
        dash.apply([(Kind.TWIN, CNC, twin)])
        resp = await client.get("/api/events", params={"tag": f"{CNC}/spindle_temp"})
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = await _events(resp, 1)
        assert first[0][0] == "snapshot"
        assert [t["machine"] for t in first[0][1]["twins"]] == [CNC]
        assert first[0][1]["tag"]["tag"] == f"{CNC}/spindle_temp"
        alarm = alarm_record(CNC, [f"{CNC}/spindle_temp"], "hot")
        dash.apply([(Kind.ALARM, CNC, alarm)])
        [(event, data)] = await _events(resp, 1)
        assert (event, data["alarm_id"]) == ("alarm", alarm["alarm_id"])
        resp.close()
    _run(catalog, body)


async def _events(resp: Any, n: int) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    event = None
    while len(out) < n:
        line = (await asyncio.wait_for(resp.content.readline(), 5)).decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: ") and event:
            out.append((event, json.loads(line[6:])))
            event = None
    return out


def test_history_requests_are_checked_and_pick_the_table_by_range(catalog: Catalog) -> None:
    assert resolution_for(RAW_MAX_MS) == "raw"
    assert resolution_for(RAW_MAX_MS + 1) == "1m"
    assert resolution_for(MINUTE_MAX_MS) == "1m"
    assert resolution_for(MINUTE_MAX_MS + 1) == "1h"
    known = frozenset(catalog.tags())
    for bad, why in ((HistoryRequest("a/b'; DROP", 0, 1), "not in the catalog"),
                     (HistoryRequest(f"{CNC}/spindle_temp", 5, 5), "must be positive")):
        try:
            bad.check(known)
        except HistoryError as exc:
            assert why in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
    sql = series_sql(HistoryRequest("it's/a\\tag", 0, 1), "1h")
    assert "FROM readings_1h WHERE tag = 'it\\'s/a\\\\tag'" in sql  # quoted, whatever comes


def test_shown_url_names_a_reachable_address() -> None:
    assert shown_url("0.0.0.0", 8080) == "http://127.0.0.1:8080/"
    assert shown_url("::", 8080) == "http://[::1]:8080/"
    assert shown_url("192.0.2.7", 80) == "http://192.0.2.7:80/"


def test_the_vendored_chart_library_is_the_pinned_release() -> None:
    folder = Path(__file__).resolve().parents[2] / "millstream/dashboard/static/vendor/uplot"
    script = (Path(__file__).resolve().parents[2] / "scripts/vendor_uplot.sh").read_text()
    pinned = re.search(r'UPLOT_VERSION:-([0-9.]+)', script)
    assert pinned is not None
    version = pinned.group(1)
    assert (folder / "VERSION").read_text().startswith(f"uplot {version} (MIT")
    assert (folder / "uPlot.iife.min.js").read_text()[:80].startswith(
        f"/*! https://github.com/leeoniya/uPlot (v{version}) */")
    assert "The MIT License" in (folder / "LICENSE").read_text()


def test_the_demo_gives_the_dashboard_a_free_port_when_its_own_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert _dashboard_port(Settings(dashboard_port=port)) == 0
    assert _dashboard_port(Settings(dashboard_port=port)) == port  # free again
