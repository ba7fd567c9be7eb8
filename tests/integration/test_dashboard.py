"""The dashboard in a real browser (Debian's Chromium, headless, driven by Playwright).

Two runs, each with its own topics on the session's Kafka:

- the page against messages this test writes in the twin and alarm contracts: values
  coloured against their range, an alarm colouring its machine card by severity and
  clearing, a bad message skipped and counted, and the page reconnecting by itself after
  the dashboard restarts;
- ``millstream demo`` (simulator, connectors, worker, sink, executor, dashboard) with an
  overheat injected: values change, the machine card turns to the alarm colour within the
  detection time, the command log shows the executor's verdict, and the tag view shows the
  live windows and the history from ClickHouse. The twin records and the alarms are the
  stream workers' own (``<prefix>.twin``, merged from their twin-inputs; ``<prefix>.alarms``
  from their alarm engine), and an alarm reaches the machine card both directly and
  through the twin, which relays it.

Screenshots go to a temporary folder (printed); ``MILLSTREAM_UPDATE_SCREENSHOT=1`` also
copies the plant view to docs/dashboard.png for the README.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from playwright.sync_api import Page

from millstream.stack.kafka import ensure_topics, free_port
from schemas.alarms import AlarmAction
from schemas.catalog import Catalog
from schemas.status import read_status
from schemas.topics import Topics
from schemas.twin import TwinRecord
from tests.integration.test_twin import consume_twins
from tests.support.browser import chromium
from tests.support.kafka import consume as kafka_consume
from tests.support.twin_records import (
    alarm_record,
    create_twin_topics,
    twin_record,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FAULT_AT_S = 28  # after the detectors' warm-up, as in test_pipeline
# from the fault's start to the card's colour: the overheat's rise (the model's 4 s time
# constant), a 1 s window closing after 1 s of lateness, the detector, the twin's next
# update and the page's. Measured ~6-10 s on a loaded 2-core machine; the bound has margin.
DETECTION_S = 30.0
NO_VALUE = "\u2013"  # what a card shows for a tag without a value (an en dash)

_CARD_JS = """(p) => {
  const c = document.querySelector(`article[data-machine="${p}"]`);
  if (!c) return null;
  return {alert: c.dataset.alert || null, state: c.dataset.state,
          border: getComputedStyle(c).borderLeftColor,
          values: Object.fromEntries([...c.querySelectorAll("tr[data-tag]")].map(tr => {
            const td = tr.querySelector("td.v");
            return [tr.dataset.tag.split("/").pop(),
                    {text: td.textContent, range: td.dataset.range,
                     color: getComputedStyle(td).color}];
          }))};
}"""
_VAR_JS = """(name) => {
  const probe = document.createElement("div");
  probe.style.color = `var(${name})`;
  document.body.append(probe);
  const c = getComputedStyle(probe).color;
  probe.remove();
  return c;
}"""


class AlarmWatch(threading.Thread):
    """Follows an alarms topic: ``alarms_raised`` holds (Unix s, record) of each episode
    raised. Lifecycle: construct, :meth:`start`, :meth:`stop`."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(name="alarm-watch", daemon=True)
        self.bootstrap, self.topic = bootstrap, topic
        self.halt = threading.Event()
        self.alarms_raised: list[tuple[float, dict[str, Any]]] = []

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)

    def run(self) -> None:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([self.topic])
        try:
            while not self.halt.is_set():
                for msg in consumer.consume(100, timeout=0.2):
                    if msg.error() is None and msg.value():
                        doc = json.loads(msg.value() or b"{}")
                        if doc.get("action") == "raised":
                            self.alarms_raised.append((time.time(), doc))
        finally:
            consumer.close()


def card(page: Page, machine: str) -> dict[str, Any] | None:
    doc: dict[str, Any] | None = page.evaluate(_CARD_JS, machine)
    return doc


def css_colour(page: Page, var: str) -> str:
    return str(page.evaluate(_VAR_JS, var))


def wait_for(what: str, cond: Any, timeout: float, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def fault_started(data: Path, machine: str) -> float:
    """When the simulator started the fault on ``machine`` (Unix s), from its log line
    ``<asctime> INFO ...: fault started at t=16.0 s: overheat@cnc-01 ...``."""
    for log in data.glob("runs/*/logs/simulator.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "fault started" in line and f"@{machine}" in line:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                return stamp.timestamp()
    raise AssertionError(f"no 'fault started' line for {machine} in the simulator's log")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-screenshots")
    print(f"\ndashboard screenshots: {folder}", file=sys.stderr)
    return folder


def _env(bootstrap: str, prefix: str, data: Path) -> dict[str, str]:
    return {**os.environ, "MILLSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "MILLSTREAM_TOPIC_PREFIX": prefix, "MILLSTREAM_DATA_DIR": str(data),
            "PYTHONUNBUFFERED": "1"}


class DashboardProcess:
    """``millstream dashboard`` on a fixed port, restartable."""

    def __init__(self, env: dict[str, str], port: int, folder: Path) -> None:
        self.env, self.port, self.folder = env, port, folder
        self.status = folder / "dashboard.json"
        self.url = f"http://127.0.0.1:{port}/"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.folder / "dashboard.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "millstream.cli", "dashboard", "--port", str(self.port),
             "--status-file", str(self.status)], env=self.env, stdout=log, stderr=log)
        wait_for("the dashboard answers /readyz", lambda: http_ok(self.url + "readyz"), 60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def dashboard(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[DashboardProcess, Topics]]:
    topics = Topics(f"dash-{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka_bootstrap, topics)
    create_twin_topics(kafka_bootstrap, topics.prefix)
    proc = DashboardProcess(_env(kafka_bootstrap, topics.prefix, tmp_path), free_port(),
                            tmp_path)
    try:
        yield proc, topics
    finally:
        proc.stop()


def test_cards_follow_the_twin_and_alarm_topics_and_the_page_reconnects(
        dashboard: tuple[DashboardProcess, Topics], kafka_bootstrap: str, catalog: Catalog,
        shots: Path, tmp_path: Path) -> None:
    dash, topics = dashboard
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def send(topic: str, key: str, doc: dict[str, Any] | bytes) -> None:
        value = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        producer.produce(topic, key=key.encode(), value=value)
        assert producer.flush(10) == 0

    cnc = twin_record(catalog, "cnc-01", {"spindle_temp": {"value": 61.5},
                                          "spindle_speed": {"value": 7998.0}})
    press = twin_record(catalog, "press-01", {"oil_temp": {"value": 80.0},  # high: 65
                                              "hydraulic_pressure": {"value": 190.0}})
    send(f"{topics.prefix}.twin", "junk", b"{not json")  # skipped, counted, nothing breaks
    send(f"{topics.prefix}.twin", cnc["machine"], cnc)
    send(f"{topics.prefix}.twin", press["machine"], press)
    dash.start()
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        page.goto(dash.url)
        seen = wait_for("the press card shows its twin",
                        lambda: (c := card(page, press["machine"])) and
                        c["values"]["oil_temp"]["text"] != NO_VALUE and c, 20)
        assert seen["values"]["oil_temp"] == {"text": "80", "range": "out",
                                              "color": css_colour(page, "--out")}
        assert seen["values"]["hydraulic_pressure"]["range"] == "ok"
        assert seen["values"]["hydraulic_pressure"]["color"] == css_colour(page, "--ok")
        assert seen["alert"] is None and seen["state"] == "running"
        assert page.get_attribute("#conn", "data-state") == "live"

        alarm = alarm_record(press["machine"], [press["tags"]["oil_temp"]["path"]],
                             "oil temperature above its range", severity="medium")
        send(f"{topics.prefix}.alarms", press["machine"], alarm)
        red = wait_for("the press card takes the alarm colour",
                       lambda: (c := card(page, press["machine"])) and c["alert"] and c, 15)
        assert red["alert"] == "medium"
        assert red["border"] == css_colour(page, "--sev-medium")
        assert card(page, cnc["machine"])["alert"] is None  # type: ignore[index]
        row = page.locator(f"#alarms tr[data-alarm='{alarm['alarm_id']}']")
        assert "oil temperature above its range" in row.inner_text()
        assert [b.get_attribute("data-action") for b in row.locator("button").all()] == [
            "ack", "shelve"]
        page.screenshot(path=str(shots / "synthetic-alarm.png"), full_page=True)
        row.locator("button[data-action='ack']").click()  # the operator acknowledges
        [sent] = kafka_consume(kafka_bootstrap, topics.alarm_actions,
                               until=lambda v: len(v) >= 1, timeout=20, settle=1.0)
        action = AlarmAction.decode(sent)
        assert (action.alarm_id, action.asset, action.action) == (
            alarm["alarm_id"], press["machine"], "ack")
        assert action.actor.startswith("dashboard:")

        closed = {**alarm, "version": 2, "state": "closed", "active": False,
                  "acknowledged": True, "action": "closed"}
        send(f"{topics.prefix}.alarms", press["machine"], closed)
        wait_for("the press card is back to normal",
                 lambda: card(page, press["machine"])["alert"] is None, 15)  # type: ignore[index]
        assert page.locator(f"#alarms tr[data-alarm='{alarm['alarm_id']}']").count() == 0

        status = read_status(dash.status)
        assert status is not None
        assert status["invalid"][f"{topics.prefix}.twin"] == 1, status
        assert "not valid JSON" in status["last_error"], status

        dash.stop()  # the page notices and keeps trying
        wait_for("the page says it is reconnecting",
                 lambda: page.get_attribute("#conn", "data-state") == "reconnecting", 15)
        page.screenshot(path=str(shots / "reconnecting.png"))
        later = {**cnc, "updated": cnc["updated"] + 1000,
                 "tags": {**cnc["tags"], "spindle_temp": {**cnc["tags"]["spindle_temp"],
                                                          "value": 70.25}}}
        send(f"{topics.prefix}.twin", cnc["machine"], later)  # while the page was away
        dash.start()
        wait_for("the page is live again with the news",
                 lambda: page.get_attribute("#conn", "data-state") == "live" and
                 card(page, cnc["machine"])["values"]["spindle_temp"]["text"] == "70.25",  # type: ignore[index]
                 30)


def test_the_live_pipeline_on_the_dashboard(kafka_bootstrap: str, catalog: Catalog,
                                            shots: Path, tmp_path: Path) -> None:
    """``millstream demo`` with its dashboard, an overheat on cnc-01, a browser watching."""
    topics = Topics(f"dashpipe-{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka_bootstrap, topics)
    create_twin_topics(kafka_bootstrap, topics.prefix)
    alarm_watch = AlarmWatch(kafka_bootstrap, topics.alarms)  # the workers' alarm episodes
    alarm_watch.start()
    port = free_port()
    env = {**_env(kafka_bootstrap, topics.prefix, tmp_path / "data"),
           "MILLSTREAM_DASHBOARD_PORT": str(port)}
    out, err = (tmp_path / "demo.out").open("wb"), (tmp_path / "demo.err").open("wb")
    started_wall = time.time()
    demo = subprocess.Popen(
        [sys.executable, "-m", "millstream.cli", "demo", "--duration", "150", "--seed", "11",
         "--fault", f"overheat@cnc-01:{FAULT_AT_S}+120"], env=env, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}/"
    machine = catalog.machine_path(next(m for m in catalog.machines if m.name == "cnc-01"))
    try:
        wait_for("the demo's dashboard answers", lambda: http_ok(url + "healthz"), 90)
        with chromium(tmp_path / "profile") as browser:
            page = browser.new_page()
            page.goto(url)
            first = wait_for("cnc-01 shows live values", lambda: (c := card(page, machine))
                             and c["values"]["spindle_temp"]["text"] != NO_VALUE and c, 60)
            assert first["alert"] is None, first  # before the fault: normal colour
            assert first["state"] == "running", first
            before = {k: v["text"] for k, v in first["values"].items()}
            changed = wait_for("the values change", lambda: {
                k: v["text"] for k, v in card(page, machine)["values"].items()  # type: ignore[index]
            } != before, 10)
            assert changed
            page.screenshot(path=str(shots / "pipeline-running.png"), full_page=True)

            red = wait_for("cnc-01's card turns to the alarm colour",
                           lambda: (c := card(page, machine)) and c["alert"] and c, 90)
            red_at = time.time()
            fault_at = fault_started(tmp_path / "data", "cnc-01")
            raised_at = next((t for t, a in alarm_watch.alarms_raised if a["asset"] == machine),
                             None)
            detected_s = red_at - fault_at
            print(f"\ndashboard: cnc-01 in alarm colour {detected_s:.1f} s after the fault "
                  f"started in the simulator (its alarm raised after "
                  f"{(raised_at or red_at) - fault_at:.1f} s; demo started "
                  f"{fault_at - started_wall:.1f} s before the fault)", file=sys.stderr)
            assert 0 < detected_s <= DETECTION_S, detected_s
            assert red["border"] == css_colour(page, f"--sev-{red['alert']}")
            assert page.locator("#alarms tr:has-text('cnc-01')").count() >= 1
            applied = page.locator("#commands tr:has(.verdict[data-verdict='applied'])")
            wait_for("the command log shows the executor's verdict",
                     lambda: applied.count() >= 1, 60)
            assert "spindle_speed_sp" in applied.first.inner_text()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "pipeline-alarm.png"), full_page=True)
            if os.environ.get("MILLSTREAM_UPDATE_SCREENSHOT") == "1":
                page.screenshot(path=str(REPO / "docs" / "dashboard.png"))

            # the tag the alarm names: its anomalies and the alarm are marked on the trend
            tag = next(a for _t, a in alarm_watch.alarms_raised if a["asset"] == machine)["tags"][0]
            page.goto(f"{url}#/tag/{tag.replace('/', '%2F')}")
            wait_for(f"the live trend of {tag} draws windows and its markers", lambda: int(
                page.get_attribute("#trend", "data-points") or 0) >= 5 and int(
                page.get_attribute("#trend", "data-anomalies") or 0) >= 1 and int(
                page.get_attribute("#trend", "data-alarms") or 0) == 1, 30)
            assert page.locator("[data-testid=windows] tr").count() >= 3  # header + sizes
            page.screenshot(path=str(shots / "pipeline-tag-live.png"), full_page=True)

            def history() -> bool:  # 15 min: raw readings from ClickHouse (asked again
                page.click("button[data-range='900000']")  # until the sink has stored them)
                page.wait_for_timeout(1500)
                return (page.get_attribute("#trend", "data-resolution") == "raw"
                        and int(page.get_attribute("#trend", "data-points") or 0) > 20
                        and int(page.get_attribute("#trend", "data-anomalies") or 0) >= 1)

            wait_for("the history from ClickHouse, with the stored anomalies", history, 40)
            page.screenshot(path=str(shots / "pipeline-tag-history.png"), full_page=True)
    finally:
        # always the orderly stop: the demo stops its stages (a kill would orphan them)
        demo.send_signal(signal.SIGTERM)
        try:
            code = demo.wait(timeout=150)
        except subprocess.TimeoutExpired:
            demo.kill()
            raise
        finally:
            alarm_watch.stop()
    assert code == 0, (tmp_path / "demo.err").read_text()[-3000:]
    stderr = (tmp_path / "demo.err").read_text()
    assert f"dashboard: http://127.0.0.1:{port}/" in stderr
    summary = json.loads((tmp_path / "demo.out").read_text().strip().splitlines()[-1])
    assert summary["lost"] == 0 and summary["interrupted"] is True, summary
    assert alarm_watch.alarms_raised, "the workers raised no alarm"
    # the cards were fed by the workers' twin: every record is a worker's, and cnc-01's
    # newest carries the alarm the twin relayed from the alarms topic
    twins = consume_twins(kafka_bootstrap, topics.twin, time.monotonic() + 30)
    assert twins and all(worker for _, worker, _ in twins)
    newest = TwinRecord.decode([v for m, _, v in twins if m == machine][-1])
    raised = {a["alarm_id"] for _t, a in alarm_watch.alarms_raised if a["asset"] == machine}
    assert raised & {a.alarm_id for a in newest.alarms}, newest.alarms
