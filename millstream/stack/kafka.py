"""The embedded Apache Kafka broker: jars from Maven Central, one KRaft node on loopback.

Lifecycle: :func:`fetch_kafka` resolves the broker's jars once with Maven and caches them
under the cache directory; :class:`EmbeddedKafka` formats a data directory, starts the
broker as a Java child process, waits until it answers, and stops it (SIGTERM, then kill).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from millstream.exceptions import StackError
from millstream.settings import Settings
from millstream.stack.kafka_security import (
    BROKER_USER,
    MECHANISM,
    KafkaSecurity,
    broker_password,
    embedded_security,
)
from millstream.stack.kafka_warm import warm_up
from millstream.stack.maven import run_maven
from millstream.stack.processes import terminate
from schemas.kafka_errors import KafkaErrorLog
from schemas.topics import Topics

__all__ = [
    "EmbeddedKafka",
    "ensure_topics",
    "fetch_kafka",
    "free_port",
    "kafka_for",
    "wait_for_kafka",
]

logger = logging.getLogger(__name__)

LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.17"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.millstream</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId><version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.out.ref = out
"""


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise StackError(
            f"'{tool}' is not on PATH: the embedded Kafka broker needs it. "
            f"Install it (Debian: apt-get install {package}), "
            "or set MILLSTREAM_KAFKA_BOOTSTRAP to use an existing Kafka cluster."
        )
    return path


def _check_java(java: str) -> None:
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)', out)
    if m is None or int(m.group(1)) < 17:
        raise StackError(
            f"Kafka 4 needs Java 17 or newer; '{java} -version' says: {out.strip()[:120]}. "
            "Install it (Debian: apt-get install openjdk-17-jre-headless)."
        )


def fetch_kafka(cache_dir: Path, version: str) -> Path:
    """The folder holding the broker's jars, resolving them with Maven the first time."""
    home = cache_dir / f"kafka-{version}"
    libs = home / "libs"
    done = home / ".complete"
    if done.exists():
        return libs
    _check_java(_need("java", "openjdk-17-jre-headless"))
    mvn = _need("mvn", "maven")
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(
        _POM.format(version=version, slf4j=SLF4J_VERSION, log4j=LOG4J_VERSION)
    )
    shutil.rmtree(libs, ignore_errors=True)
    print(f"millstream: fetching Apache Kafka {version} jars from Maven Central "
          f"(once; cached in {home}) ...", file=sys.stderr, flush=True)
    run = run_maven(
        [mvn, "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={libs}", "-DincludeScope=runtime"], f"Kafka {version} jars")
    if run.returncode != 0 or not any(libs.glob(f"kafka_2.13-{version}.jar")):
        tail = "\n".join(run.tail).strip()[-1500:]
        raise StackError(
            f"Maven could not fetch Apache Kafka {version} (exit {run.returncode}). "
            f"Check that Maven Central is reachable and the version exists "
            f"(MILLSTREAM_KAFKA_VERSION). Maven said:\n{tail}"
        )
    done.write_text(version)
    print(f"millstream: Kafka jars ready ({len(list(libs.glob('*.jar')))} jars; "
          f"{run.summary()} from Maven Central, the rest from ~/.m2)",
          file=sys.stderr, flush=True)
    return libs


def free_port() -> int:
    """A TCP port on loopback that the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _admin(bootstrap: str, conf: dict[str, str] | None) -> tuple[AdminClient, KafkaErrorLog]:
    errors = KafkaErrorLog(bootstrap, conf or {}, logger)
    full: dict[str, Any] = {"bootstrap.servers": bootstrap, "log_level": 0, "error_cb": errors,
                            **(conf or {})}
    admin = AdminClient(full)
    return admin, errors


def wait_for_kafka(bootstrap: str, timeout: float = 60.0, conf: dict[str, str] | None = None,
                   proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Block until a broker at ``bootstrap`` answers a metadata request. A refused login
    or an untrusted certificate fails at once, with what to fix."""
    deadline = time.monotonic() + timeout
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    while time.monotonic() < deadline:  # the port first: librdkafka logs every refusal
        if proc is not None and proc.poll() is not None:
            break
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    admin, errors = _admin(bootstrap, conf)
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(
                f"the Kafka broker exited with code {proc.returncode} while starting; "
                f"see its log {log}"
            )
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception as exc:  # KafkaException while the broker starts
            last = exc
        admin.poll(0)  # serves error_cb
        if errors.config_error:
            raise StackError(errors.config_error)
        time.sleep(0.3)
    reason = errors.last or str(last)
    raise StackError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s ({reason})"
                     + (f"; see {log}" if log else ""))


def ensure_topics(bootstrap: str, topics: Topics, conf: dict[str, str] | None = None) -> None:
    """Create millstream's topics where missing, with the partitions ``Topics`` names."""
    admin, errors = _admin(bootstrap, conf)
    try:
        existing = set(admin.list_topics(timeout=10).topics)
    except Exception as exc:
        admin.poll(0)
        raise StackError(f"cannot list the topics of Kafka at {bootstrap}: "
                         f"{errors.config_error or errors.last or exc}") from exc
    new = [NewTopic(t, num_partitions=topics.partitions(t), replication_factor=1,
                    config=topics.config(t))
           for t in topics.all() if t not in existing]
    if not new:
        return
    for name, fut in admin.create_topics(new, operation_timeout=30).items():
        try:
            fut.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError(f"could not create topic {name}: {exc}") from exc


class EmbeddedKafka:
    """One Kafka broker+controller (KRaft) on 127.0.0.1, owned by this process.

    ``with EmbeddedKafka(libs, data_dir) as k: k.bootstrap`` — starts on enter, stops on exit.
    """

    def __init__(self, libs: Path, data_dir: Path, port: int | None = None,
                 heap: str = "512m", fresh: bool = True,
                 security: KafkaSecurity | None = None) -> None:
        self.libs = libs
        self.security = security
        self.data_dir = data_dir
        self.port = port or free_port()
        self.controller_port = free_port()
        self.heap = heap
        self.fresh = fresh
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "broker.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, *args: str, **kw: object) -> list[str]:
        java = _need("java", "openjdk-17-jre-headless")
        return [java, f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp", f"{self.libs}/*", *args]

    def client_config(self) -> dict[str, str]:
        """Security options of a client that logs in as the broker itself (admin work of
        the local stack: readiness, topics); empty for a PLAINTEXT broker."""
        if self.security is None:
            return {}
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": MECHANISM,
                "sasl.username": BROKER_USER, "sasl.password": broker_password(self.data_dir),
                "ssl.ca.location": str(self.security.pki.ca_cert)}

    def _write_properties(self, logs: Path) -> Path:
        props = self.data_dir / "server.properties"
        listeners = [
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
        ] if self.security is None else self.security.listener_properties(
            self.data_dir, self.port, self.controller_port)
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            *listeners,
            f"log.dirs={logs}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "log.retention.hours=24",
            "",
        ]
        fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # SASL: a password
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines))
        return props

    def start(self, timeout: float = 90.0) -> str:
        if self.fresh:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(level="WARN"))
        props = self._write_properties(logs)
        if not (logs / "meta.properties").exists():
            scram = self.security.format_args(self.data_dir) if self.security else []
            fmt = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", "bWlsbHN0cmVhbS1sb2NhbA",
                           "-c", str(props), "--ignore-formatted", *scram),
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise StackError(f"formatting Kafka's data directory {logs} failed:\n"
                                 f"{(fmt.stdout + fmt.stderr)[-1500:]}")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self._java("kafka.Kafka", str(props)),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, and we stop it
        )
        log.close()
        try:
            wait_for_kafka(self.bootstrap, timeout, conf=self.client_config(), proc=self.proc,
                           log=self.log_path)
            warm_up(self.bootstrap, self.client_config())
        except BaseException:
            self.stop()
            raise
        logger.info("Kafka broker up at %s (pid %s%s)", self.bootstrap, self.proc.pid,
                    ", SASL_SSL" if self.security else "")
        return self.bootstrap

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, timeout)

    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@contextmanager
def kafka_for(settings: Settings, data_dir: Path, *, port: int | None = None) -> Iterator[str]:
    """The bootstrap of MILLSTREAM_KAFKA_BOOTSTRAP's cluster, or of an embedded broker
    that runs in ``data_dir`` (fresh) for the duration of the ``with``."""
    if settings.kafka_bootstrap:
        yield settings.kafka_bootstrap
        return
    security = embedded_security(settings)
    libs = fetch_kafka(settings.cache_dir, settings.kafka_version)
    print(f"millstream: starting Apache Kafka {settings.kafka_version} (embedded, KRaft"
          f"{', SASL_SSL' if security else ''}) ...", file=sys.stderr, flush=True)
    with EmbeddedKafka(libs, data_dir, port=port, security=security) as kafka:
        yield kafka.bootstrap
