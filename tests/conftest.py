"""Shared fixtures. Integration fixtures start the real parts once per session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from millstream.settings import Settings
from millstream.stack.kafka import ensure_topics, free_port, kafka_for
from millstream.stack.mosquitto import EmbeddedMosquitto
from schemas.catalog import Catalog, load_catalog
from schemas.topics import Topics

__all__ = ["free_port"]

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
