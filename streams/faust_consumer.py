"""A Faust transport whose consumer fetches promptly, for the fast path.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``. aiokafka keeps one
fetch request in flight per broker, and leaves out of it the partitions whose records are
still buffered; when the request in flight asks only for quiet partitions, the broker
holds it for ``fetch_max_wait_ms``, and a frame that meanwhile lands on the busy
partition waits that long. Measured in ``millstream bench latency``: the worker took
frames in bursts every ~1.5 s, 0.2-1.6 s after they were produced. A short wait bounds
that stall; the cost is one empty fetch per ``FETCH_MAX_WAIT_MS`` while idle.

Lifecycle: ``app.transport = PromptTransport(app.conf.broker_consumer, app)`` before the
app starts.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import aiokafka
from faust.transport.drivers import aiokafka as driver

__all__ = ["FETCH_MAX_WAIT_MS", "PromptTransport"]

logger = logging.getLogger(__name__)

FETCH_MAX_WAIT_MS = 10


class _PromptThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: driver.Transport) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands this to its fetcher in start(); Faust offers no setting for it
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _PromptConsumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _PromptThread(self, loop=self.loop, beacon=self.beacon)


class PromptTransport(driver.Transport):
    """Faust's aiokafka transport with a consumer that waits at most
    ``FETCH_MAX_WAIT_MS`` for a fetch."""

    Consumer: ClassVar[type[driver.Consumer]] = _PromptConsumer
