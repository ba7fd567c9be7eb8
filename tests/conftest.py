"""Shared fixtures. Integration fixtures start the real parts once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from pydantic import SecretStr

from millstream.settings import Settings
from millstream.stack.kafka import EmbeddedKafka, ensure_topics, fetch_kafka, free_port, kafka_for
from millstream.stack.kafka_security import KafkaSecurity
from millstream.stack.mosquitto import EmbeddedMosquitto
from schemas.catalog import Catalog, load_catalog
from schemas.topics import Topics

__all__ = ["SecureKafka", "free_port"]

SECURE_KAFKA_USER = "millstream"
SECURE_KAFKA_PASSWORD = "kafka-Pw-4b7e-never-logged"  # tests grep for it


@dataclass(frozen=True)
class SecureKafka:
    """An embedded broker speaking SASL_SSL (SCRAM-SHA-512) and how to log in to it."""

    bootstrap: str
    ca: Path  # PEM of the CA that signed the broker's certificate
    user: str = SECURE_KAFKA_USER
    password: str = SECURE_KAFKA_PASSWORD

    def conf(self, **override: str) -> dict[str, str]:
        """librdkafka options of a client that logs in (``override`` to get it wrong)."""
        return {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": self.user, "sasl.password": self.password,
                "ssl.ca.location": str(self.ca), **override}

    def env(self) -> dict[str, str]:
        """The MILLSTREAM_KAFKA_* variables every stage reads to log in."""
        return {"MILLSTREAM_KAFKA_BOOTSTRAP": self.bootstrap,
                "MILLSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "MILLSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "MILLSTREAM_KAFKA_SASL_USERNAME": self.user,
                "MILLSTREAM_KAFKA_SASL_PASSWORD": self.password,
                "MILLSTREAM_KAFKA_SSL_CA_LOCATION": str(self.ca)}

# Property tests check what is computed, not how fast: hypothesis's per-example deadline
# (200 ms) fails them on a loaded 2-core machine (a falsely "flaky" codec test was seen).
settings.register_profile("millstream", deadline=None)
settings.load_profile("millstream")


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The simulated plant that ships with millstream."""
    return load_catalog()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka: MILLSTREAM_KAFKA_BOOTSTRAP if set, else the embedded broker."""
    with kafka_for(Settings(), tmp_path_factory.mktemp("kafka")) as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    """A second real Kafka, TLS and SASL/SCRAM on its only client listener: the local
    stack's embedded broker with its own CA and one user."""
    settings = Settings()
    folder = tmp_path_factory.mktemp("secure-kafka")
    security = KafkaSecurity({SECURE_KAFKA_USER: SecretStr(SECURE_KAFKA_PASSWORD)},
                             folder / "pki")
    libs = fetch_kafka(settings.cache_dir, settings.kafka_version)
    with EmbeddedKafka(libs, folder / "kafka", security=security) as kafka:
        yield SecureKafka(kafka.bootstrap, security.pki.ca_cert)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMosquitto]:
    """A real MQTT broker: Debian's Mosquitto on a free loopback port, with persistence.
    A test that restarts a broker starts its own (``EmbeddedMosquitto(tmp_path)``)."""
    with EmbeddedMosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    """Fresh topics for one test, so tests sharing the broker never see each other."""
    t = Topics(prefix=f"test-{uuid.uuid4().hex[:10]}")
    ensure_topics(kafka_bootstrap, t)
    return t


@pytest.fixture
def chdb_dsn(tmp_path: Path) -> str:
    """A fresh chDB directory. One process opens one chDB path at a time: run a sink
    that owns it in a subprocess, or close the client before the test opens another."""
    return f"chdb://{tmp_path / 'chdb'}"
