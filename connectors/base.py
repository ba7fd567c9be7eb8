"""The contract of an edge source: one loop, ``run()``; the base owns everything else.

A source reads a device and calls :meth:`Source.emit` for every value. The base numbers
the readings (:class:`FrameBuilder`) and sends a frame to the :class:`ReadingPublisher`
when it is full, when no reading came for ``frame_idle_ms`` (a burst has ended: low
traffic does not wait), or ``frame_ms`` after its first reading, whichever is first. It
writes the status file every second, and on stop flushes what is left, waits for Kafka to
confirm it and closes the publisher.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from schemas.events import now_ms
from schemas.readings import FrameBuilder, Quality, ReadingFrame
from schemas.status import write_status

if TYPE_CHECKING:
    from schemas.health import StageHealth

__all__ = ["FRAME_IDLE_MS", "FRAME_MS", "STATUS_EVERY_S", "FramePublisher", "Source"]

logger = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0
FRAME_MS = 200  # the longest a reading waits in a frame that is neither full nor idle
FRAME_IDLE_MS = 5  # a frame goes once no reading came for this long (0: off)
FLUSH_TIMEOUT_S = 10.0


class FramePublisher(Protocol):
    """Where a source's frames go (:class:`~connectors.publisher.ReadingPublisher`)."""

    delivered: int
    failed: int
    frames: int
    last_error: str | None

    def publish(self, frame: ReadingFrame) -> None: ...

    def poll(self, timeout: float = 0.0) -> None: ...

    def flush(self, timeout: float = 10.0) -> int: ...

    def close(self) -> None: ...


class Source(abc.ABC):
    """One connector instance reading one source of the catalog.

    Lifecycle: construct, ``await serve(stop)`` (starts ``run()``, the flush timer and the
    status writer; returns the final status once ``stop`` is set or ``run()`` ends), done.
    Subclasses implement ``run()`` and may override ``cleanup()`` to close their client.
    """

    protocol: ClassVar[str]

    def __init__(
        self,
        name: str,
        publisher: FramePublisher,
        *,
        status_file: Path | None = None,
        frame_ms: int = FRAME_MS,
        max_readings: int = 1000,
        frame_idle_ms: int = FRAME_IDLE_MS,
    ) -> None:
        if frame_ms < 1 or frame_idle_ms < 0:
            raise ValueError(f"frame_ms={frame_ms} must be >= 1 and frame_idle_ms="
                             f"{frame_idle_ms} >= 0 (0 turns the idle flush off)")
        self.name = name
        self.publisher = publisher
        self.status_file = status_file
        self.frame_ms = frame_ms
        self.frame_idle_ms = frame_idle_ms
        # the idle flush: armed by the first reading of a frame (see _idle_check)
        self._idle: asyncio.TimerHandle | None = None
        self._idle_seen = 0  # readings pending at the last check
        self._idle_due = 0.0  # loop time by which the frame goes at the latest
        self.epoch = now_ms()
        self.builder = FrameBuilder(source=name, epoch=self.epoch, max_readings=max_readings)
        self.connected = False
        self.errors = 0
        self.last_error: str | None = None
        self.running = False
        self.health: StageHealth | None = None  # /metrics, /readyz: gets every status

    # -- what a source implements ------------------------------------------------------
    @abc.abstractmethod
    async def run(self) -> None:
        """Read the device and ``emit()`` readings while ``self.running``; reconnect inside."""

    async def cleanup(self) -> None:  # noqa: B027 - optional hook
        """Close the device client. Called once after ``run()`` has ended or been cancelled."""

    # -- what a source calls -----------------------------------------------------------
    def emit(self, tag: str, ts: int, value: float | None, quality: Quality = Quality.GOOD, *,
             server_ts: int | None = None, status: str | None = None,
             text: str | None = None) -> None:
        """Queue one reading; a full frame goes to Kafka at once. ``status`` names the
        device's status or why there is no value; ``text`` is a text tag's value."""
        self.builder.add(tag, ts, value, quality, server_ts=server_ts, status=status, text=text)
        if self.builder.full:
            self._publish_pending()
        elif self._idle is None and self.frame_idle_ms:
            self._arm_idle()

    @property
    def blocked(self) -> bool:
        """True while the publisher takes no more frames (a full spool, policy ``block``):
        a source then stops reading its device, ``await self.wait_unblocked()``."""
        return bool(getattr(self.publisher, "blocked", False))

    async def wait_unblocked(self) -> None:
        """Return once the publisher takes frames again (at once when it does)."""
        while self.blocked and self.running:
            await asyncio.sleep(self.frame_ms / 1000)

    def record_error(self, message: str) -> None:
        """Count a device error; the message is what a person reads in the status file."""
        self.errors += 1
        self.last_error = message

    # -- lifecycle -----------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event | None = None) -> dict[str, Any]:
        """Run until ``stop`` is set (or ``run()`` returns); return the final status.

        An exception from ``run()`` (a configuration error) propagates after cleanup.
        """
        stop = stop or asyncio.Event()
        self.running = True
        runner = asyncio.create_task(self.run(), name=f"{self.name}-run")
        timers = [
            asyncio.create_task(self._flush_loop(), name=f"{self.name}-flush"),
            asyncio.create_task(self._status_loop(), name=f"{self.name}-status"),
        ]
        stopper = asyncio.create_task(stop.wait(), name=f"{self.name}-stop")
        logger.info("source %s (%s) started, epoch %d", self.name, self.protocol, self.epoch)
        try:
            await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.running = False
            for task in (runner, stopper, *timers):
                task.cancel()
            results = await asyncio.gather(runner, stopper, *timers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self.cleanup()
            self.connected = False
            status = await self._finish()
        failure = results[0]
        if isinstance(failure, BaseException) and not isinstance(failure, asyncio.CancelledError):
            raise failure
        return status

    async def _finish(self) -> dict[str, Any]:
        self._publish_pending()
        remaining = await asyncio.to_thread(self.publisher.flush, FLUSH_TIMEOUT_S)
        if remaining:
            self.record_error(
                f"{remaining} frame(s) not confirmed by Kafka within {FLUSH_TIMEOUT_S:.0f} s "
                "were given up (counted as failed); check that the brokers are reachable"
            )
        self.publisher.close()
        status = self._reported()
        write_status(self.status_file, status)
        logger.info("source %s stopped: %s", self.name, status)
        return status

    def status(self) -> dict[str, Any]:
        """The counters the status file carries (see schemas/status.py)."""
        spool = getattr(self.publisher, "spool_status", None)
        return {
            **({"spool": spool()} if spool is not None else {}),
            "source": self.name,
            "protocol": self.protocol,
            "epoch": self.epoch,
            "produced": self.builder.produced,
            "delivered": self.publisher.delivered,
            "failed": self.publisher.failed,
            "frames": self.publisher.frames,
            "connected": self.connected,
            "running": self.running,
            "errors": self.errors,
            "last_error": self.last_error or self.publisher.last_error,
            "updated_at": now_ms(),
        }

    def _reported(self) -> dict[str, Any]:
        doc = self.status()
        return doc if self.health is None else self.health.report(doc)

    def _publish_pending(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        frame = self.builder.flush()
        if frame is not None:
            self.publisher.publish(frame)
            if self.health is not None:
                self.health.observe_frame(len(frame), self.name)

    def _arm_idle(self) -> None:
        """The frame's first reading: check for idleness in ``frame_idle_ms``."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # emitted outside the event loop: the frame_ms timer sends it
            return
        self._idle_seen = self.builder.pending
        self._idle_due = loop.time() + self.frame_ms / 1000
        self._idle = loop.call_later(self.frame_idle_ms / 1000, self._idle_check)

    def _idle_check(self) -> None:
        """Send the frame if no reading came since the last check, or it is ``frame_ms``
        old; else look again in ``frame_idle_ms``. One timer per frame, none per reading."""
        self._idle = None
        pending = self.builder.pending
        if not pending:
            return
        loop = asyncio.get_running_loop()
        left = self._idle_due - loop.time()
        if pending == self._idle_seen or left <= 0:
            self._publish_pending()
            self.publisher.poll(0)
            return
        self._idle_seen = pending
        self._idle = loop.call_later(min(self.frame_idle_ms / 1000, left), self._idle_check)

    async def _flush_loop(self) -> None:
        period = self.frame_ms / 1000
        while True:
            await asyncio.sleep(period)
            self._publish_pending()
            self.publisher.poll(0)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            write_status(self.status_file, self._reported())
