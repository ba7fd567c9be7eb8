"""Store and forward against a real Kafka that goes away: nothing lost, gaps exact.

The broker here is this module's own embedded Kafka, stopped and started again on the
same port with the same data directory. The source is :mod:`tests.support.synthetic`
(~2,000 readings/s through the real connector base, spool and publisher) in its own
process; the real sink (``millstream sink``, chDB) stores what arrives, and
:func:`millstream.summary.summarize` counts lost and duplicated readings by
(source, epoch, seq) the way the demo does.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.spool_segment import iter_records
from millstream.settings import Settings
from millstream.stack.kafka import EmbeddedKafka, ensure_topics, fetch_kafka
from millstream.stack.processes import Child, terminate
from millstream.summary import SourceRun, summarize
from schemas.catalog import Catalog
from schemas.readings import Quality, ReadingFrame
from schemas.status import read_status
from schemas.topics import Topics
from tests.support.kafka import consume_frames

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
RATE = 2000.0
OUTAGE_S = 60.0


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """``check()``'s first truthy answer; fails naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {got!r})")
        time.sleep(every)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    """A broker of this module's own: the tests stop it and start it again."""
    settings = Settings()
    kafka = EmbeddedKafka(fetch_kafka(settings.cache_dir, settings.kafka_version),
                          tmp_path_factory.mktemp("spool-kafka"))
    kafka.start()
    kafka.fresh = False  # from now on a restart keeps the data directory
    yield kafka
    kafka.stop()


def up(kafka: EmbeddedKafka) -> None:
    if kafka.proc is None:
        kafka.start(timeout=180)


class Stack:
    """One test's topics, sink (optional) and synthetic connector processes."""

    def __init__(self, kafka: EmbeddedKafka, tmp: Path) -> None:
        self.kafka = kafka
        self.tmp = tmp
        self.prefix = f"spool-{uuid.uuid4().hex[:8]}"
        self.topics = Topics(self.prefix)
        self.spool = tmp / "spool"
        self.dsn = f"chdb://{tmp / 'chdb'}"
        self.sink: Child | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        ensure_topics(kafka.bootstrap, self.topics)

    def start_sink(self) -> None:
        env = {"MILLSTREAM_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
               "MILLSTREAM_DATA_DIR": str(self.tmp), "MILLSTREAM_TOPIC_PREFIX": self.prefix}
        self.sink = Child("sink", ["sink", "--status-file", str(self.tmp / "sink.json")], env,
                          self.tmp / "sink.log")
        self.sink.start()

    def start_source(self, name: str, *extra: str) -> tuple[subprocess.Popen[bytes], Path]:
        status = self.tmp / f"{name}.json"
        status.unlink(missing_ok=True)
        with (self.tmp / f"{name}.out").open("wb") as out, \
                (self.tmp / f"{name}.log").open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.support.synthetic", "--bootstrap",
                 self.kafka.bootstrap, "--prefix", self.prefix, "--spool", str(self.spool),
                 "--status-file", str(status), "--rate", str(RATE), *extra],
                cwd=REPO, stdout=out, stderr=err, start_new_session=True)
        self.procs.append(proc)
        return proc, status

    def final(self, proc: subprocess.Popen[bytes], name: str) -> dict[str, Any]:
        """SIGTERM, then the final status the process printed."""
        assert terminate(proc, 60) == 0, self.log(name)
        doc: dict[str, Any] = json.loads((self.tmp / f"{name}.out").read_text().splitlines()[-1])
        return doc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def stored(self, runs: list[SourceRun]) -> dict[str, Any]:
        """The demo's summary for these runs, once ClickHouse has every reading (or 120 s)."""
        want = sum(r.produced for r in runs)

        def check() -> dict[str, Any] | None:
            s = summarize(self.dsn, runs, 0)
            return s if s["readings_in_clickhouse"] >= want else None

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                got = check()
            except Exception:  # the sink's query server is not up yet
                got = None
            if got:
                return got
            time.sleep(1.0)
        return summarize(self.dsn, runs, 0)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.sink is not None:
            self.sink.stop()


@pytest.fixture
def stack(broker: EmbeddedKafka, tmp_path: Path) -> Iterator[Stack]:
    up(broker)
    s = Stack(broker, tmp_path)
    try:
        yield s
    finally:
        s.close()
        up(broker)  # the next test finds it running


def spool_of(path: Path) -> dict[str, Any]:
    status = read_status(path)
    return dict(status.get("spool", {})) if status else {}


def caught_up(spool: dict[str, Any]) -> bool:
    """The backlog is gone: what the spool holds is the live frame or two in flight."""
    return bool(spool) and spool["readings"] < RATE and spool["oldest_age_s"] < 2


def test_kafka_down_for_a_minute_under_load_loses_nothing(stack: Stack) -> None:
    stack.start_sink()
    proc, status = stack.start_source("src")
    t0 = time.monotonic()
    wait_until("the connector's first confirmed readings",
               lambda: (read_status(status) or {}).get("delivered", 0) > RATE, 60)
    stack.kafka.stop()
    down = time.monotonic()
    time.sleep(OUTAGE_S / 2)
    mid = read_status(status) or {}
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
    peak = spool_of(status)
    stack.kafka.start(timeout=180)
    back = time.monotonic()
    rates: list[float] = []

    def drained() -> bool:
        sp = spool_of(status)
        rates.append(float(sp.get("replay_readings_per_s", 0.0)))
        return caught_up(sp)

    wait_until("the spool to drain after Kafka came back", drained, 120)
    drain_s = time.monotonic() - back
    time.sleep(2)
    final = stack.final(proc, "src")
    elapsed = time.monotonic() - t0

    # the outage was spooled: ~2,000 readings/s for a minute, growing older, on disk
    assert mid["spool"]["readings"] > RATE * 10 and mid["spool"]["oldest_age_s"] > 10, mid
    assert peak["readings"] > RATE * OUTAGE_S * 0.6, peak
    assert peak["bytes"] > 0 and peak["dropped_readings"] == 0, peak
    assert max(rates) > RATE, (rates, drain_s)  # drained faster than the live rate
    # the connector kept reading at the rate, and counts everything confirmed
    assert final["produced"] > RATE * elapsed * 0.6, (final, elapsed)
    assert final["delivered"] == final["produced"] and final["failed"] == 0, final
    assert final["spool"]["frames"] == 0 and final["spool"]["corrupt"] == [], final
    summary = stack.stored([SourceRun("synthetic", final["epoch"], final["produced"],
                                      final["delivered"])])
    assert summary["readings_in_clickhouse"] == final["produced"], summary
    assert summary["lost"] == 0 and summary["duplicates"] == 0, summary


def spooled_until(folder: Path, epoch: int) -> int:
    """The last seq of ``epoch`` the spool folder holds (what the killed run had framed)."""
    last = 0
    for seg in sorted(folder.glob("*.seg")):
        for rec in iter_records(seg, int(seg.stem)):
            if rec.epoch == epoch:
                last = max(last, rec.last_seq)
    return last


def test_connector_killed_while_spooling_resumes_from_the_spool(stack: Stack) -> None:
    stack.start_sink()
    first, status1 = stack.start_source("first")
    wait_until("the connector's first confirmed readings",
               lambda: (read_status(status1) or {}).get("delivered", 0) > RATE, 60)
    stack.kafka.stop()
    wait_until("~10 s of readings in the spool",
               lambda: spool_of(status1).get("readings", 0) > RATE * 10, 60)
    before = read_status(status1) or {}
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    epoch1 = int(before["epoch"])
    framed1 = spooled_until(stack.spool, epoch1)
    assert framed1 >= before["produced"] > 0

    second, status2 = stack.start_source("second")  # same spool folder, Kafka still away
    wait_until("the restarted connector", lambda: read_status(status2), 60)
    time.sleep(3)
    assert spool_of(status2)["frames"] > 0
    stack.kafka.start(timeout=180)
    wait_until("the spool to drain", lambda: caught_up(spool_of(status2)), 120)
    final = stack.final(second, "second")
    assert final["epoch"] != epoch1
    assert final["delivered"] == final["produced"] and final["failed"] == 0, final
    assert final["spool"]["replayed"] > 0  # the killed run's frames went out from the spool
    runs = [SourceRun("synthetic", epoch1, framed1, 0),
            SourceRun("synthetic", final["epoch"], final["produced"], final["delivered"])]
    summary = stack.stored(runs)
    assert summary["readings_in_clickhouse"] == framed1 + final["produced"], summary
    assert summary["lost"] == 0 and summary["duplicates"] == 0, summary


GAP = re.compile(r"gap: spool full, (\d+) readings of epoch (\d+) seq (\d+)\.\.(\d+) dropped")


def test_full_spool_drops_the_oldest_and_reports_the_gap_exactly(stack: Stack,
                                                                  catalog: Catalog) -> None:
    max_bytes = 256 * 1024
    probe = ReadingFrame("synthetic", 1, 1, ["acme/plant1/forming/line2/press-01/oil_temp"] * 100,
                         [1_763_760_000_000] * 100, [12345.0] * 100, [0] * 100)
    per_reading = len(probe.encode()) / 100
    limit = int(1.5 * max_bytes / per_reading)  # overflows once, then not again
    stack.kafka.stop()
    proc, status = stack.start_source("src", "--max-bytes", str(max_bytes), "--segment-bytes",
                                      str(max_bytes // 8), "--limit", str(limit))
    wait_until("every reading framed and the spool overflowing", lambda: (
        (read_status(status) or {}).get("produced", 0) >= limit
        and spool_of(status).get("dropped_readings", 0) > 0), 120)
    assert spool_of(status)["bytes"] <= max_bytes
    stack.kafka.start(timeout=180)
    wait_until("the spool to drain", lambda: spool_of(status).get("frames", -1) == 0, 120)
    final = stack.final(proc, "src")
    dropped = final["spool"]["dropped_readings"]
    assert dropped > 0 and final["failed"] == 0, final

    frames = consume_frames(stack.kafka.bootstrap, stack.topics.readings,
                            final["produced"] - dropped, timeout=60.0)
    got = [r for f in frames for r in f.readings() if r.epoch == final["epoch"]]
    seqs = [r.seq for r in got]
    assert len(seqs) == len(set(seqs)) == final["produced"] - dropped
    missing = set(range(1, final["produced"] + 1)) - set(seqs)
    markers = [r for r in got if r.status and r.status.startswith("gap: spool full")]
    assert markers and all(r.quality is Quality.BAD and r.value is None for r in markers)
    reported: set[int] = set()
    for reason in {r.status for r in markers}:
        m = GAP.fullmatch(reason or "")
        assert m, reason
        n, epoch, lo, hi = map(int, m.groups())
        assert epoch == final["epoch"] and n == hi - lo + 1
        assert reported.isdisjoint(range(lo, hi + 1))
        reported |= set(range(lo, hi + 1))
        tags = [r.tag for r in markers if r.status == reason]  # one marker per tag
        assert len(tags) == len(set(tags)) == min(n, len(catalog.tags()))
    assert reported == missing and len(missing) == dropped  # the gap, exactly
