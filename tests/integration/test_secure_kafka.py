"""The pipeline over Kafka with TLS and SASL/SCRAM, and the clients Kafka must refuse.

One short ``run_demo`` (module fixture) against the session's SASL_SSL broker: every stage
(connectors, the Faust worker, the ClickHouse sink into chDB, the executor) gets only
``MILLSTREAM_KAFKA_*`` variables and logs in as the broker's one SCRAM-SHA-512 user,
with the broker's CA. The stages' secrets (Kafka password, command-signing key, ClickHouse
and OPC-UA passwords) are known values, and no log or status file of the run holds one;
``test_secrets.py`` does the same where each login is refused.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from millstream.demo import DemoOptions, run_demo
from millstream.exceptions import StackError
from millstream.settings import Settings
from millstream.stack.kafka import wait_for_kafka
from tests.conftest import SecureKafka
from tests.support.certs import make_cert
from tests.support.stage_watch import StageWatch

pytestmark = pytest.mark.integration

SOURCES = {"opcua-sim", "modbus-sim", "sparkplug-sim"}
CLICKHOUSE_PASSWORD = "ch-Pw-91c2-never-logged"
OPCUA_PASSWORD = "opc-Pw-5d0a-never-logged"


@dataclass
class SecureRun:
    summary: dict[str, Any]
    run_dir: Path
    secrets: dict[str, str]  # what each secret is -> its value
    stages: StageWatch  # /readyz (Kafka probed with the same login) and /metrics


def signing_key(keys_dir: Path) -> str:
    """A new Ed25519 key as base64 of its raw bytes (MILLSTREAM_COMMAND_SIGNING_KEY); its
    public key trusted for the worker's signer id ``streams``."""
    key = Ed25519PrivateKey.generate()
    trusted = keys_dir / "trusted"
    trusted.mkdir(parents=True)
    (trusted / "streams.pub").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def secure_run(secure_kafka: SecureKafka,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRun]:
    data = tmp_path_factory.mktemp("secure-pipeline")
    key = signing_key(data / "keys")
    env = {**secure_kafka.env(), "MILLSTREAM_DATA_DIR": str(data),
           "MILLSTREAM_TOPIC_PREFIX": f"sec-{uuid.uuid4().hex[:8]}",
           "MILLSTREAM_COMMAND_SIGNING_KEY": key,
           "MILLSTREAM_CLICKHOUSE_PASSWORD": CLICKHOUSE_PASSWORD,  # chDB ignores it
           "PLC_PASSWORD": OPCUA_PASSWORD}  # in every stage's environment
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        settings = Settings()  # what each stage reads: only the environment
        assert settings.kafka_client_config()["security.protocol"] == "SASL_SSL"
        stages = StageWatch(data / "run", {f"source-{s}" for s in SOURCES}
                            | {"worker", "sink", "executor"})
        stages.start()
        summary = run_demo(settings, DemoOptions(
            duration=26, seed=3, faults=["overheat@cnc-01:6+60"], run_dir=data / "run"))
        stages.join(10)
    yield SecureRun(summary, data / "run", {
        "kafka password": secure_kafka.password, "signing key": key,
        "clickhouse password": CLICKHOUSE_PASSWORD, "opc-ua password": OPCUA_PASSWORD}, stages)


def test_every_stage_works_over_sasl_ssl(secure_run: SecureRun) -> None:
    s = secure_run.summary
    assert s["readings_produced"] > 1000, s
    assert s["readings_in_clickhouse"] == s["readings_produced"]
    assert s["lost"] == 0 and s["duplicates"] == 0
    assert set(s["readings_by_source"]) == SOURCES and all(s["readings_by_source"].values()), s
    assert s["aggregates"] > 0  # the worker (aiokafka) read and wrote over SASL_SSL
    # the worker signed a command with the configured key, the executor verified and
    # applied it, and the sink stored its result: the control path over SASL_SSL too
    assert s["commands_executed"] >= 1, s
    assert s["commands_refused_or_failed"] == 0, s


def test_every_stage_was_ready_with_kafka_probed_over_sasl_ssl(secure_run: SecureRun) -> None:
    w = secure_run.stages
    assert not w.problems, w.problems
    assert {n: code for n, (code, _body) in w.ready.items()} == dict.fromkeys(w.urls, 200), w.ready
    assert len(w.urls) == len(SOURCES) + 3


def test_no_secret_in_any_log_or_status_file(secure_run: SecureRun) -> None:
    files = [p for p in secure_run.run_dir.rglob("*") if p.is_file()]
    w = secure_run.stages  # what Prometheus and a probe saw: every label, every /readyz body
    seen = [repr(s) for s in (*w.first.values(), *w.last.values())]
    seen += [repr(body) for _code, body in w.ready.values()]
    assert len(seen) >= 2 * len(w.urls)
    for text in seen:
        for what, value in secure_run.secrets.items():
            assert value not in text, f"the {what} is in a /metrics or /readyz answer"
    assert {p.name for p in files} >= {"worker.log", "sink.log", "executor.log",
                                       "connect-opcua-sim.log", "worker.json", "sink.json"}
    for path in files:
        text = path.read_text(errors="replace")
        for what, value in secure_run.secrets.items():
            assert value not in text, f"the {what} is in {path}"


def test_wrong_password_is_refused_with_what_to_fix(secure_kafka: SecureKafka) -> None:
    wrong = "not-the-password"
    with pytest.raises(StackError) as refused:
        wait_for_kafka(secure_kafka.bootstrap, timeout=30,
                       conf=secure_kafka.conf(**{"sasl.password": wrong}))
    message = str(refused.value)
    assert f"refused the login of user '{secure_kafka.user}' (SCRAM-SHA-512)" in message
    assert "MILLSTREAM_KAFKA_SASL_PASSWORD" in message
    assert "invalid credentials" in message  # the broker's own words, kept
    assert wrong not in message and secure_kafka.password not in message


def test_untrusted_broker_certificate_is_refused_with_what_to_fix(
        secure_kafka: SecureKafka, tmp_path: Path) -> None:
    other = make_cert(tmp_path, "other-ca", uri="urn:other-ca")  # a CA that signed nothing here
    ca = tmp_path / "other-ca.pem"
    ca.write_bytes(other.cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(StackError) as refused:
        wait_for_kafka(secure_kafka.bootstrap, timeout=30,
                       conf=secure_kafka.conf(**{"ssl.ca.location": str(ca)}))
    message = str(refused.value)
    assert f"TLS handshake with Kafka at {secure_kafka.bootstrap} failed" in message
    assert str(ca) in message and "MILLSTREAM_KAFKA_SSL_CA_LOCATION" in message
    assert "certificate verify failed" in message


def test_the_right_login_is_accepted(secure_kafka: SecureKafka) -> None:
    wait_for_kafka(secure_kafka.bootstrap, timeout=30, conf=secure_kafka.conf())
