"""Secrets never reach a log, a status file or an error: the stages' failure paths.

Each stage runs as ``millstream …`` in its own process with known secret values, on the
paths where a secret is most likely to leak, because something refused it:
- a connector whose OPC-UA server refuses its user's password, and whose Kafka login is
  refused (a wrong Kafka password, against the session's SASL_SSL broker);
- a stream worker (aiokafka) and an executor with that wrong Kafka password, the worker
  holding a command-signing key;
- a sink and ``millstream query`` whose ClickHouse DSN carries a password, against a
  server that is not there.
Then every byte they wrote (stdout, stderr, logs, status files) is searched for every
secret. ``test_secure_kafka.py`` does the same for a run where everything works.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import Server, ua
from asyncua.crypto.permission_rules import User

from millstream.stack.kafka import free_port
from schemas.catalog import DEFAULT_CATALOG
from tests.conftest import SecureKafka
from tests.integration.test_secure_kafka import signing_key

pytestmark = pytest.mark.integration

OPCUA_USER = "operator"
OPCUA_PASSWORD = "opc-Pw-e21f-never-logged"
WRONG_KAFKA_PASSWORD = "wrong-kafka-Pw-77aa-never-logged"
DSN_PASSWORD = "dsn-Pw-3c9d-never-logged"
CLICKHOUSE_PASSWORD = "ch-Pw-0b6e-never-logged"


class RefuseEveryone:
    """asyncua user manager: no user name and password is right."""

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        return None


@pytest.fixture(scope="module")
def locked_plc() -> Iterator[str]:
    """An OPC-UA server that accepts only user name logins, and refuses every one."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = f"opc.tcp://127.0.0.1:{free_port()}/locked/"

    async def start() -> Server:
        server = Server(user_manager=RefuseEveryone())  # type: ignore[arg-type]
        await server.init()
        server.set_endpoint(url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.UserNameIdentityToken])
        await server.start()
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    yield url
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def catalog_with_a_password(folder: Path) -> Path:
    """The shipped plant, its OPC-UA source logging in with a user name and password."""
    doc = yaml.safe_load(DEFAULT_CATALOG.read_text())
    for source in doc["sources"]:
        if source["name"] == "opcua-sim":
            source["security"] = {"username": OPCUA_USER, "password_env": "PLC_PASSWORD"}
    path = folder / "plant.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Stage:
    """``millstream ARGS`` with its stdout and stderr in files."""

    def __init__(self, folder: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.out, self.err = folder / f"{name}.out", folder / f"{name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "millstream.cli", *args],
                                         stdout=out, stderr=err, env=env,
                                         start_new_session=True)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def text(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")


def test_no_secret_in_any_output_of_a_stage_whose_login_was_refused(
        secure_kafka: SecureKafka, locked_plc: str, tmp_path: Path) -> None:
    key = signing_key(tmp_path / "keys")
    env = {**os.environ, **secure_kafka.env(),
           "MILLSTREAM_KAFKA_SASL_PASSWORD": WRONG_KAFKA_PASSWORD,
           "MILLSTREAM_DATA_DIR": str(tmp_path), "MILLSTREAM_TOPIC_PREFIX": "secrets",
           "MILLSTREAM_CATALOG": str(catalog_with_a_password(tmp_path)),
           "MILLSTREAM_COMMAND_SIGNING_KEY": key, "PLC_PASSWORD": OPCUA_PASSWORD,
           "MILLSTREAM_CLICKHOUSE_DSN":
               f"http://millstream:{DSN_PASSWORD}@127.0.0.1:{free_port()}/plant",
           "MILLSTREAM_CLICKHOUSE_PASSWORD": CLICKHOUSE_PASSWORD, "PYTHONUNBUFFERED": "1"}
    secrets = {"kafka password": secure_kafka.password, "wrong kafka password":
               WRONG_KAFKA_PASSWORD, "opc-ua password": OPCUA_PASSWORD, "signing key": key,
               "dsn password": DSN_PASSWORD, "clickhouse password": CLICKHOUSE_PASSWORD}
    status = {name: tmp_path / f"{name}.json" for name in ("connect", "worker", "executor",
                                                           "sink")}
    stages = {
        "connect": Stage(tmp_path, "connect", ["connect", "opcua-sim", "--endpoint", locked_plc,
                                               "--status-file", str(status["connect"])], env),
        "worker": Stage(tmp_path, "worker", ["worker", "--loglevel", "info",
                                             "--status-file", str(status["worker"])], env),
        "executor": Stage(tmp_path, "executor", ["executor",
                                                 "--status-file", str(status["executor"])], env),
        "sink": Stage(tmp_path, "sink", ["sink", "--status-file", str(status["sink"])], env),
        "query": Stage(tmp_path, "query", ["query", "SELECT 1"], env),
    }
    time.sleep(15)  # connector and worker retry meanwhile; sink and query give up
    codes = {name: stage.stop() for name, stage in stages.items()}
    texts = {name: stage.text() for name, stage in stages.items()}
    texts |= {f"{name}.json": path.read_text() for name, path in status.items()
              if path.exists()}
    for where, text in texts.items():
        for what, value in secrets.items():
            assert value not in text, f"the {what} is in the output of {where}:\n{text[-3000:]}"

    # and each refusal was said, with what to fix
    connect = texts["connect"] + texts.get("connect.json", "")
    assert f"refused the login of user '{secure_kafka.user}' (SCRAM-SHA-512)" in connect, connect
    assert OPCUA_USER in connect and "PLC_PASSWORD" in connect, connect
    assert codes["query"] != 0 and "millstream:***@127.0.0.1" in texts["query"], texts["query"]
    assert codes["sink"] != 0 and "millstream:***@127.0.0.1" in texts["sink"], texts["sink"]
    for stage in ("worker", "executor"):  # aiokafka, confluent-kafka: both say it on exit
        assert codes[stage] != 0, (stage, texts[stage][-3000:])
        # the stage's own last word; librdkafka's thread may still log a FAIL line after it
        said = [line for line in texts[stage].strip().splitlines()
                if not line.startswith("%") or "|FAIL|" not in line]
        last = said[-1]
        assert last.startswith("millstream: error: "), (stage, texts[stage][-3000:])
        assert f"refused the login of user '{secure_kafka.user}' (SCRAM-SHA-512)" in last
        assert "MILLSTREAM_KAFKA_SASL_PASSWORD" in last, (stage, last)
