"""OPC-UA source: subscribes to every tag of its machines; the server pushes changes.

Monitored items sample at the source's ``interval_ms`` and the subscriptions publish at
the same period (no polling). Subscriptions hold at most ``chunk`` items each, since one
asyncua subscription lags above a few thousand. Notifications arrive through the
subscriptions' async iterators (no task per notification) and only go into the frame
builder: nothing in the path awaits the network. On a lost connection the source logs,
counts the error, reconnects with backoff and subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import (
    DataChangeEvent,
    StatusChangeEvent,
    SubEvent,
    Subscription,
)

from connectors.base import FramePublisher, Source
from connectors.exceptions import ConnectorConfigError, DeviceError
from schemas.catalog import Catalog, SourceSpec
from schemas.events import now_ms
from schemas.exceptions import CatalogError, OpcUaSecurityError
from schemas.opcua_client import connect_client
from schemas.opcua_nodes import resolve_nodes
from schemas.readings import Quality

__all__ = ["OpcUaSource", "quality_of", "reading_of", "to_unix_ms"]

logger = logging.getLogger(__name__)

CHUNK = 1000
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_unix_ms(dt: datetime) -> int:
    """A datetime as Unix milliseconds; naive datetimes are UTC (as OPC UA's are)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def quality_of(status: ua.StatusCode | int | None) -> Quality:
    """OPC UA severity (the status code's top two bits): Good, Uncertain or Bad."""
    code = 0 if status is None else status if isinstance(status, int) else status.value
    severity = (int(code) >> 30) & 0b11
    return Quality.GOOD if severity == 0 else Quality.UNCERTAIN if severity == 1 else Quality.BAD


def reading_of(value: Any, dv: ua.DataValue | None, received_ms: int) -> tuple[int, float | None,
                                                                               Quality]:
    """(source ts, value, quality) of one notification. Booleans become 1.0/0.0; a value
    that is not a finite number is sent as None with quality BAD."""
    ts = received_ms
    quality = Quality.GOOD
    if dv is not None:
        stamp = dv.SourceTimestamp or dv.ServerTimestamp
        if stamp is not None:
            ts = to_unix_ms(stamp)
        quality = quality_of(dv.StatusCode)
    if isinstance(value, bool):
        return ts, 1.0 if value else 0.0, quality
    if isinstance(value, int | float) and math.isfinite(value):
        return ts, float(value), quality
    return ts, None, Quality.BAD


class OpcUaSource(Source):
    """Subscribes to the tags of one OPC-UA server.

    Lifecycle as :class:`~connectors.base.Source`; ``run()`` connects, subscribes, waits
    for the connection to drop, and starts over with backoff.
    """

    protocol = "opcua"

    def __init__(
        self,
        catalog: Catalog,
        spec: SourceSpec,
        publisher: FramePublisher,
        *,
        endpoint: str | None = None,
        status_file: Path | None = None,
        frame_ms: int = 200,
        chunk: int = CHUNK,
        timeout_s: float = 4.0,
        pki_dir: Path | None = None,
    ) -> None:
        super().__init__(spec.name, publisher, status_file=status_file, frame_ms=frame_ms)
        self.endpoint = endpoint or spec.endpoint
        self.interval_ms = spec.interval_ms
        self.chunk = chunk
        self.timeout_s = timeout_s
        self.pki_dir = pki_dir  # OPC-UA certificates; needed when the source is secured
        self.spec = spec
        self.tag_specs = [(catalog.tag_path(m, t), t) for m in catalog.machines_of(spec.name)
                          for t in m.tags]
        self.tags = [path for path, _ in self.tag_specs]
        if not self.tags:
            raise ConnectorConfigError(
                f"OPC-UA source {spec.name!r} has no machines in the catalog; "
                f"add machines with 'source: {spec.name}'"
            )
        self.client: Client | None = None
        self.notifications = 0
        self.reconnects = 0
        self.repeats = 0  # notifications of a value already published (resent on resubscribe)
        self._last: dict[str, tuple[int, float | None, Quality]] = {}
        self._path_of: dict[ua.NodeId, str] = {}
        self._lost = asyncio.Event()

    async def run(self) -> None:
        backoff = BACKOFF_START_S
        while self.running:
            was_up = False
            try:
                await self._session()
            except DeviceError as exc:
                was_up = self.connected
                self._error(str(exc), loud=was_up or self.errors == 0)
            finally:
                self.connected = False
                await self._close()
            if was_up:  # a lost session starts the backoff over
                backoff = BACKOFF_START_S
            if not self.running:
                return
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def cleanup(self) -> None:
        await self._close()

    async def _session(self) -> None:
        """Connect, subscribe, and consume until the connection is lost."""
        self._lost = asyncio.Event()
        try:
            client = await connect_client(self.spec, self.endpoint, self.pki_dir,
                                          timeout=self.timeout_s, on_lost=self._on_lost)
        except OpcUaSecurityError as exc:  # retried too: an admin may trust us or it later
            if str(exc) != self.last_error:  # loud once per new refusal, then in the status
                logger.error("%s", exc)
                self.last_error = str(exc)
            raise DeviceError(self.endpoint, str(exc)) from exc
        except (TimeoutError, OSError, ua.UaError) as exc:  # connect() cleans up after itself
            raise DeviceError(
                self.endpoint,
                f"cannot reach OPC-UA server {self.endpoint}: is the simulator running? start it "
                f"with `millstream simulate`, or point the source at the server ({exc!r})",
            ) from exc
        self.client = client  # connected: _close() disconnects it
        try:
            nodes, missing = await resolve_nodes(client, self.spec, self.endpoint, self.tag_specs)
        except CatalogError as exc:
            raise ConnectorConfigError(str(exc)) from exc
        except (TimeoutError, OSError, ConnectionError, ua.UaError) as exc:
            raise DeviceError(self.endpoint, f"resolving the nodes at OPC-UA server "
                              f"{self.endpoint} failed: {exc!r}; retrying") from exc
        if missing:
            path, why = next(iter(missing.items()))
            self._error(f"OPC-UA server {self.endpoint}: {len(missing)} tag(s) not found, e.g. "
                        f"{path}: {why}; check the catalog against the server", loud=True)
        self._path_of = {nodeid: path for path, nodeid in nodes.items()}
        subs = await self._subscribe(client, nodes)
        self.connected = True
        logger.info("subscribed to %d tags at %s in %d subscription(s)", len(self.tags),
                    self.endpoint, len(subs))
        consumers = [asyncio.create_task(self._consume(s)) for s in subs]
        lost = asyncio.create_task(self._lost.wait())
        try:
            await asyncio.wait({lost, *consumers}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (lost, *consumers):
                task.cancel()
            await asyncio.gather(lost, *consumers, return_exceptions=True)
        raise DeviceError(self.endpoint, f"lost the connection to OPC-UA server {self.endpoint}; "
                          "reconnecting")

    async def _subscribe(self, client: Client, found: dict[str, ua.NodeId]) -> list[Subscription]:
        subs = []
        tags = [t for t in self.tags if t in found]
        try:
            for start in range(0, len(tags), self.chunk):
                paths = tags[start : start + self.chunk]
                sub = await client.create_subscription(self.interval_ms, None, queue_maxsize=0)
                nodes = [client.get_node(found[p]) for p in paths]
                results = await sub.subscribe_data_change(
                    nodes, sampling_interval=ua.Double(self.interval_ms)
                )
                subs.append(sub)
                bad = [p for p, r in zip(paths, results, strict=True)
                       if isinstance(r, ua.StatusCode)]
                if bad:
                    self._error(f"OPC-UA server {self.endpoint} has no node for {len(bad)} tag(s), "
                                f"e.g. {bad[0]} ({found[bad[0]].to_string()}); check the catalog "
                                "against the server",
                                loud=True)
        except (TimeoutError, OSError, ConnectionError, ua.UaError) as exc:
            raise DeviceError(self.endpoint, f"subscribing at OPC-UA server {self.endpoint} "
                              f"failed: {exc!r}; retrying") from exc
        return subs

    async def _consume(self, sub: Subscription) -> None:
        """Move one subscription's notifications into the frame builder."""
        try:
            async for event in sub:
                self._handle(event)
        finally:  # cancelled (stop, lost session): what asyncua already queued still counts
            queue = getattr(sub, "_event_queue", None)  # asyncua has no public non-blocking get
            while queue is not None and not queue.empty():
                event = queue.get_nowait()
                if event is None:  # the iterator's end sentinel
                    break
                self._handle(event)

    def _handle(self, event: SubEvent) -> None:
        """One notification into the frame builder; a BAD subscription status ends the session."""
        if isinstance(event, DataChangeEvent):
            self.notifications += 1
            reading = reading_of(event.value, event.data.monitored_item.Value, now_ms())
            tag = self._path_of.get(event.node.nodeid)
            if tag is None:
                return
            if self._last.get(tag) == reading:  # a new session resends current values
                self.repeats += 1
                return
            self._last[tag] = reading
            self.emit(tag, *reading)
        elif isinstance(event, StatusChangeEvent) and quality_of(
            event.notification.Status
        ) is Quality.BAD:
            logger.warning("subscription status %s", event.notification.Status)
            self._lost.set()

    async def _on_lost(self, exc: Exception) -> None:
        logger.warning("lost the connection to OPC-UA server %s: %r", self.endpoint, exc)
        self._lost.set()

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), timeout=2.0)

    def _error(self, message: str, *, loud: bool) -> None:
        if loud and message != self.last_error:
            logger.warning("%s", message)
        self.record_error(message)
