"""Is Kafka there? A metadata request with the stage's own settings, for ``/readyz``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

__all__ = ["KafkaProbe"]

logger = logging.getLogger(__name__)


class KafkaProbe:
    """Asks the cluster for its metadata (the brokers answer, the credentials pass).

    Lifecycle: construct, :meth:`check` as often as wanted (the client is made on first
    use, and an answer is kept for ``cache_s``), :meth:`close`. Thread-safe.
    """

    def __init__(self, bootstrap: str, config: Mapping[str, Any] | None = None, *,
                 timeout_s: float = 2.0, cache_s: float = 2.0) -> None:
        self.bootstrap = bootstrap
        self.config = dict(config or {})
        self.timeout_s, self.cache_s = timeout_s, cache_s
        self._client: AdminClient | None = None
        self._lock = threading.Lock()
        self._last: tuple[float, str | None] | None = None
        self._quiet = logging.getLogger("schemas.health.librdkafka")

    def check(self) -> str | None:
        """None when Kafka answered, else a sentence naming the cluster and the fix."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self.cache_s:
                return self._last[1]
            verdict = self._ask()
            self._last = (time.monotonic(), verdict)
            return verdict

    def _ask(self) -> str | None:
        try:
            if self._client is None:
                conf: dict[str, Any] = {
                    "bootstrap.servers": self.bootstrap, **self.config,
                    "logger": self._quiet, "log_level": 0,
                    "error_cb": lambda _err: None,  # the answer below says it once
                }
                self._client = AdminClient(conf)
            self._client.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            text = err.str() if hasattr(err, "str") else str(err)
            return (f"Kafka at {self.bootstrap} did not answer within {self.timeout_s:g} s "
                    f"({text}); check that the brokers run and MILLSTREAM_KAFKA_* is right")
        except Exception as exc:  # a bad option: the probe must say so, not crash
            return f"cannot ask Kafka at {self.bootstrap}: {type(exc).__name__}: {exc}"
        return None

    def close(self) -> None:
        with self._lock:
            self._client = None  # AdminClient has no close(); dropping it ends its threads
