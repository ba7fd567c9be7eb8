"""Finding the running local stack from another terminal: the broker file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from millstream.exceptions import StackError
from millstream.settings import Settings

__all__ = ["broker_file", "resolve_bootstrap", "write_broker_file"]


def broker_file(settings: Settings) -> Path:
    return settings.data_dir / "kafka.json"


def write_broker_file(settings: Settings, bootstrap: str) -> Path:
    path = broker_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bootstrap": bootstrap, "pid": os.getpid()}))
    return path


def resolve_bootstrap(settings: Settings) -> str:
    """MILLSTREAM_KAFKA_BOOTSTRAP, else the broker `millstream kafka`/`demo` is running."""
    if settings.kafka_bootstrap:
        return settings.kafka_bootstrap
    path = broker_file(settings)
    try:
        doc = json.loads(path.read_text())
        pid = int(doc["pid"])
        os.kill(pid, 0)
        return str(doc["bootstrap"])
    except (OSError, ValueError, KeyError, TypeError):
        raise StackError(
            "no Kafka to talk to: set MILLSTREAM_KAFKA_BOOTSTRAP=host:port for an existing "
            "cluster, or start the embedded broker with `millstream kafka` (or `millstream "
            "demo`) in another terminal"
        ) from None
