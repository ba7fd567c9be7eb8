"""OPC-UA source: subscribes to every tag of its machines; the server pushes changes.

A session connects, resolves the tags' nodes, subscribes (:mod:`connectors.opcua_items`)
and turns notifications into readings (:mod:`connectors.opcua_values`) as they arrive
through the subscriptions' async iterators: no task and no network await per
notification. A lost connection (socket closed, failed keepalive probe, BAD subscription
status) ends the session; the source reconnects with backoff (0.5 s doubling to 2 s) and
subscribes again, so data flows within a few seconds of the server coming back.

Gaps are visible in the data. When a session ends for any reason but stop, every tag
gets one *gap marker*: a BAD reading with a null value and ``status`` ``gap: <reason>``,
stamped when the loss was detected (and after the tag's last published reading). On
resubscribe the server sends each tag's current value again. A tag's first value after
its marker is published as it is when its source timestamp is later than the marker;
otherwise (the value did not change during the gap) it is published at marker ts + 1 ms
with ``status`` ``resumed after gap; source ts <original>``. Ordered by ts, a consumer
sees: last value, marker, resumed (or new) value; no tag stays in a gap while the server
answers. Outside a gap, a notification identical to the tag's last published reading
(asyncua's watchdog may recreate a subscription, and the server then resends) is not a
new reading: it is counted in ``repeats`` and dropped. Stop emits no markers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from asyncua import Client, ua
from asyncua.common.subscription import DataChangeEvent, StatusChangeEvent, SubEvent, Subscription

from connectors.base import FRAME_IDLE_MS, FRAME_MS, FramePublisher, Source
from connectors.exceptions import ConnectorConfigError, DeviceError
from connectors.opcua_gaps import GapTracker
from connectors.opcua_items import Group, Item, Subscribed, add_items, plan, subscribe, vanished
from connectors.opcua_values import Converted, convert, quality_of, status_name, to_unix_ms
from schemas.catalog import Catalog, SourceSpec
from schemas.events import now_ms
from schemas.exceptions import CatalogError, OpcUaSecurityError
from schemas.opcua_client import connect_client
from schemas.opcua_nodes import resolve_nodes
from schemas.readings import Quality

__all__ = ["OpcUaSource", "SessionEnded", "quality_of", "to_unix_ms"]

logger = logging.getLogger(__name__)

CHUNK = 1000
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 2.0
_NET_ERRORS = (TimeoutError, OSError, ConnectionError, ua.UaError)


class OpcUaSource(Source):
    """Subscribes to the tags of one OPC-UA server.

    Lifecycle as :class:`~connectors.base.Source`; ``run()`` connects, subscribes, waits
    for the connection to drop, marks the gap, and starts over with backoff.
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
        frame_ms: int = FRAME_MS,
        frame_idle_ms: int = FRAME_IDLE_MS,
        chunk: int = CHUNK,
        timeout_s: float = 4.0,
        watchdog_s: float = 2.0,
        audit_s: float = 10.0,
        pki_dir: Path | None = None,
    ) -> None:
        super().__init__(spec.name, publisher, status_file=status_file, frame_ms=frame_ms,
                         frame_idle_ms=frame_idle_ms)
        self.endpoint = endpoint or spec.endpoint
        self.pki_dir = pki_dir  # OPC-UA certificates; needed when the source is secured
        self.spec = spec
        self.chunk, self.timeout_s = chunk, timeout_s
        self.watchdog_s, self.audit_s = watchdog_s, audit_s
        self.tag_specs = [(catalog.tag_path(m, t), t) for m in catalog.machines_of(spec.name)
                          for t in m.tags]
        self.tags = [path for path, _ in self.tag_specs]
        if not self.tags:
            raise ConnectorConfigError(
                f"OPC-UA source {spec.name!r} has no machines in the catalog; "
                f"add machines with 'source: {spec.name}'"
            )
        self.monitoring = {path: spec.monitoring_of(t) for path, t in self.tag_specs}
        self.text_tags = frozenset(path for path, t in self.tag_specs if t.kind == "text")
        self.client: Client | None = None
        # counters (status and tests)
        self.notifications = self.reconnects = self.bad_values = 0
        self.gaps = GapTracker()  # markers, resumed values, repeats
        self.missing: dict[str, str] = {}  # tags whose node the server lacks: why
        self.unfiltered: dict[str, str] = {}  # tags whose deadband the server refused: why
        self._items: dict[int, str] = {}  # client handle -> tag path (this session)
        self._handle = 0
        self._lost = asyncio.Event()
        self._audit_now = asyncio.Event()

    async def run(self) -> None:
        backoff = BACKOFF_START_S
        while self.running:
            was_up = False
            try:
                await self._session()
            except DeviceError as exc:
                was_up = self.connected
                self._error(str(exc), loud=was_up or self.errors == 0)
                self.connected = False
                if self.running:  # stop marks no gap
                    self._mark_gap(exc.gap if isinstance(exc, SessionEnded)
                                   else f"no session with {self.endpoint}")
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

    async def _connect(self) -> Client:
        """A connected asyncua client for the endpoint (the one place that makes one),
        secured as the catalog says."""
        try:
            client = await connect_client(self.spec, self.endpoint, self.pki_dir,
                                          timeout=self.timeout_s, on_lost=self._on_lost,
                                          watchdog_s=self.watchdog_s)
        except OpcUaSecurityError as exc:  # retried too: an admin may trust us or it later
            if str(exc) != self.last_error:  # loud once per new refusal, then in the status
                logger.error("%s", exc)
                self.last_error = str(exc)
            raise DeviceError(self.endpoint, str(exc)) from exc
        except (TimeoutError, OSError, ua.UaError) as exc:  # connect() cleans up after itself
            raise SessionEnded(f"cannot reach {self.endpoint}",
                         f"cannot reach OPC-UA server {self.endpoint}: is the simulator running? "
                         f"start it with `millstream simulate`, or point the source at the server "
                         f"({exc!r})", self.endpoint) from exc
        return client

    async def _session(self) -> None:
        """Connect, subscribe, and consume until the connection is lost."""
        self._lost, self._audit_now = asyncio.Event(), asyncio.Event()
        client = await self._connect()
        client.connection_lost_callback = self._on_lost
        self.client = client  # connected: _close() disconnects it
        try:
            nodes, missing = await resolve_nodes(client, self.spec, self.endpoint, self.tag_specs)
            self._items = {}
            items = [self._item(path, nodes[path]) for path in self.tags if path in nodes]
            groups = plan(items, self.chunk)
            made = await subscribe(client, groups)
        except CatalogError as exc:
            raise ConnectorConfigError(str(exc)) from exc
        except _NET_ERRORS as exc:
            raise SessionEnded(f"connection lost to {self.endpoint}", f"subscribing at OPC-UA "
                               f"server {self.endpoint} failed: {exc!r}; retrying",
                               self.endpoint) from exc
        self._report(made, missing, nodes)
        self.connected = True
        logger.info("subscribed to %d tags at %s in %d subscription(s)", len(self._items),
                    self.endpoint, len(made.subscriptions))
        tasks: list[asyncio.Task[object]] = [
            *(asyncio.create_task(self._consume(s)) for s in made.subscriptions),
            asyncio.create_task(self._lost.wait()),
            asyncio.create_task(self._audit(client, made, groups)),
            asyncio.create_task(self._follow_block(made.subscriptions)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        raise SessionEnded(f"connection lost to {self.endpoint}", f"lost the connection to OPC-UA "
                     f"server {self.endpoint}; reconnecting", self.endpoint)

    def _item(self, path: str, nodeid: ua.NodeId) -> Item:
        self._handle += 1
        self._items[self._handle] = path
        return Item(self._handle, path, nodeid, self.monitoring[path])

    def _report(self, made: Subscribed, missing: dict[str, str],
                nodes: dict[str, ua.NodeId]) -> None:
        """Tags without a node: a BAD reading each, and one loud error; refused deadbands:
        one warning per tag, the first time."""
        self._items = {h: p for h, p in self._items.items() if p not in made.failed}
        lacking = {**missing, **{p: f"{why}: no node {nodes[p].to_string()} at the server"
                                 for p, why in made.failed.items()}}
        for path, why in lacking.items():
            self._publish(path, Converted(now_ms(), None, Quality.BAD, status=why))
        if lacking and lacking != self.missing:
            path, why = next(iter(lacking.items()))
            self._error(f"OPC-UA server {self.endpoint}: {len(lacking)} tag(s) not found, e.g. "
                        f"{path}: {why}; check the catalog against the server", loud=True)
        self.missing = lacking
        for path, why in made.unfiltered.items():
            if path not in self.unfiltered:
                self._error(f"OPC-UA server {self.endpoint} refused the deadband of {path} "
                            f"({self.monitoring[path].deadband}): {why}; it is monitored "
                            "without it (a percent deadband needs an AnalogItem with an EURange)",
                            loud=True)
        self.unfiltered.update(made.unfiltered)

    async def _consume(self, sub: Subscription) -> None:
        """Move one subscription's notifications into the frame builder."""
        try:
            async for event in sub:
                self._handle_event(event)
        finally:  # cancelled (stop, lost session): what asyncua already queued still counts
            queue = getattr(sub, "_event_queue", None)  # asyncua has no public non-blocking get
            while queue is not None and not queue.empty():
                event = queue.get_nowait()
                if event is None:  # the iterator's end sentinel
                    break
                self._handle_event(event)

    def _handle_event(self, event: SubEvent) -> None:
        """One notification into the frame builder; a BAD subscription status ends the
        session (BadNodeIdUnknown only wakes the node audit)."""
        if isinstance(event, DataChangeEvent):
            self.notifications += 1
            item = event.data.monitored_item
            path = self._items.get(item.ClientHandle)
            if path is not None:
                self._publish(path, convert(event.value, item.Value, now_ms(),
                                            text=path in self.text_tags))
        elif isinstance(event, StatusChangeEvent):
            status = event.notification.Status
            if status.value == ua.StatusCodes.BadNodeIdUnknown:  # a node went: check them now
                self._audit_now.set()
            elif quality_of(status) is Quality.BAD:
                logger.warning("subscription status %s", status_name(status))
                self._lost.set()

    def _publish(self, path: str, reading: Converted) -> None:
        """Emit one reading of ``path``, closing its gap (see the module docstring)."""
        admitted = self.gaps.admit(path, reading)
        if admitted is None:
            return
        if admitted.quality is Quality.BAD:
            self.bad_values += 1
        self.emit(path, admitted.ts, admitted.value, admitted.quality,
                  server_ts=admitted.server_ts, status=admitted.status, text=admitted.text)

    def _mark_gap(self, reason: str) -> None:
        """One gap marker for every tag not already in a gap."""
        for path, marker in zip(self.tags, self.gaps.mark(self.tags, now_ms(), reason),
                                strict=True):
            if marker is not None:
                self.emit(path, marker.ts, None, Quality.BAD, status=marker.status)

    async def _follow_block(self, subs: list[Subscription]) -> None:
        """A full spool with policy block: stop the subscriptions publishing (the server
        keeps each item's last ``queue_size`` values) until the spool takes frames again."""
        paused = False
        while True:
            if self.blocked != paused:
                paused = self.blocked
                logger.warning("%s publishing at %s: the spool is %s", "pausing" if paused
                               else "resuming", self.endpoint, "full" if paused else "free")
                for sub in subs:
                    await sub.set_publishing_mode(not paused)
            await asyncio.sleep(self.frame_ms / 1000)

    async def _audit(self, client: Client, made: Subscribed, groups: list[Group]) -> None:
        """Every ``audit_s``: tags whose node was deleted get a BAD reading; a node that
        comes back is monitored again. A read lost to the network ends the session."""
        sub_of = {i.handle: sub for g, sub in zip(groups, made.subscriptions, strict=True)
                  for i in g.items}
        live = [i for g in groups for i in g.items if i.path not in made.failed]
        gone: dict[str, Item] = {}
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._audit_now.wait(), self.audit_s)
            self._audit_now.clear()
            try:
                now_gone = await vanished(client, [*live, *gone.values()], self.chunk)
                back = [i for p, i in gone.items() if p not in now_gone]
                for item in back:
                    again = Subscribed()
                    fresh = self._item(item.path, item.nodeid)
                    await add_items(sub_of[item.handle], [fresh], again)
                    sub_of[fresh.handle] = sub_of[item.handle]
                    live.append(fresh)
                    del gone[item.path]
            except ua.UaStatusCodeError as exc:  # the server refuses the read: no audit
                self._error(f"OPC-UA server {self.endpoint} refused reading the tags' nodes "
                            f"({exc!r}); deleted nodes go unnoticed", loud=True)
                await asyncio.Future()  # the session goes on; cancelled when it ends
            except _NET_ERRORS as exc:
                logger.warning("checking the nodes at %s failed: %r", self.endpoint, exc)
                return
            for item in [i for i in live if i.path in now_gone]:
                live.remove(item)
                gone[item.path] = item
                self._items.pop(item.handle, None)
                why = f"{now_gone[item.path]}: node {item.nodeid.to_string()} deleted at the server"
                self._error(f"OPC-UA server {self.endpoint}: {item.path}: {why}", loud=True)
                self._publish(item.path, Converted(now_ms(), None, Quality.BAD, status=why))

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


class SessionEnded(DeviceError):
    """A session's end; ``gap`` is the short reason its gap markers carry."""

    def __init__(self, gap: str, message: str, endpoint: str) -> None:
        super().__init__(endpoint, message)
        self.gap = gap
