"""Polling one Modbus device: its connection, its read plan as it learns it, its backoff.

A :class:`Link` is one client connection per endpoint, shared by every device (unit id)
behind it; pymodbus serialises the requests on it. A :class:`ModbusDevice` polls one
machine's blocks over its link and reports :class:`~connectors.modbus_map.TagValue` s:

- an exception response naming an address (codes 2, 3, 4) on a block of several tags splits
  the block in two and reads both halves at once, down to the one register refused; the
  split plan is kept, so later polls read the good parts as they are and retry the bad one
  with its own exponential backoff (a register that comes back is picked up); once every
  part has answered for ``MERGE_AFTER_S``, the planned blocks are read again (a transient
  refusal must not leave a device read one register at a time);
- a timeout, a lost connection or a busy/gateway exception (5, 6, 10, 11) marks the rest of
  the poll BAD and backs the whole device off (exponential, capped), so a dead device is not
  hammered and its peers, polled by their own tasks, do not wait for it;
- a wrong-length answer or any other exception marks that block BAD and backs it off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

from connectors.modbus_map import MachinePlan, ReadBlock, TagValue, bad_values, decode_block
from connectors.modbus_map import split_block as halves_of
from schemas.events import now_ms
from schemas.modbus_wire import ModbusIOError, make_client, read_table

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_START_S",
    "MERGE_AFTER_S",
    "Backoff",
    "Link",
    "ModbusDevice",
    "Reporter",
]

logger = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 10.0
MERGE_AFTER_S = 60.0  # a split plan healthy this long goes back to the planned blocks
SPLIT_CODES = frozenset({2, 3, 4})  # the refusal may be one register's: bisect to find it
DEVICE_CODES = frozenset({5, 6, 10, 11})  # the device or its gateway is busy or away


class Reporter(Protocol):
    """Where a device's results go (the source): values with their poll time, and errors."""

    def report_values(self, ts: int, values: list[TagValue]) -> None: ...

    def report_error(self, message: str, *, loud: bool) -> None: ...


@dataclass(slots=True)
class Backoff:
    """Exponential backoff: after n failures in a row, wait start * 2**(n-1), at most cap."""

    start: float = BACKOFF_START_S
    cap: float = BACKOFF_MAX_S
    failures: int = 0
    until: float = 0.0

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = min(self.start * 2 ** (self.failures - 1), self.cap)
        self.until = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures, self.until = 0, 0.0

    def waiting(self, now: float) -> bool:
        return now < self.until


class Link:
    """One connection to one endpoint. Connects on demand; a failed connect is not retried
    by another device within ``BACKOFF_START_S`` (devices drive retries with their backoff).

    With RTU framing a reply carries no transaction id, so after a timeout the link is
    closed: a late reply must not be taken for the answer to the next request.
    """

    def __init__(self, endpoint: str, *, framer: str = "tcp", timeout_s: float = 1.0) -> None:
        self.endpoint = endpoint
        self.framer = framer
        self.client = make_client(endpoint, framer=framer, timeout_s=timeout_s)
        self._lock = asyncio.Lock()
        self._failed_at = -BACKOFF_START_S
        self._failure = ""
        self.requests = 0

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    async def ensure(self) -> str | None:
        """None when connected, else why not (a sentence naming the endpoint)."""
        async with self._lock:
            if self.client.connected:
                return None
            if time.monotonic() - self._failed_at < BACKOFF_START_S:
                return self._failure
            try:
                ok = bool(await self.client.connect()) and self.client.connected
            except (OSError, TimeoutError, ModbusIOError) as exc:
                logger.debug("Modbus connect to %s failed: %r", self.endpoint, exc)
                ok = False
            if ok:
                logger.info("connected to Modbus endpoint %s (%s framing)", self.endpoint,
                            self.framer)
                return None
            self.client.close()
            self._failed_at = time.monotonic()
            self._failure = (f"cannot reach Modbus device at {self.endpoint}: is the device "
                             "(or the simulator, `millstream simulate`) running and reachable?")
            return self._failure

    async def read(self, block: ReadBlock) -> list[int] | list[bool]:
        if not self.client.connected:  # closed under a peer (RTU timeout, lost link)
            reason = await self.ensure()
            if reason is not None:
                raise ModbusIOError("connection", reason)
        self.requests += 1
        try:
            return await read_table(self.client, block.table, block.address, block.count,
                                    block.unit)
        except ModbusIOError as exc:
            if exc.kind == "timeout" and self.framer == "rtu":
                self.client.close()
            raise

    def close(self) -> None:
        self.client.close()


@dataclass(slots=True)
class Part:
    """One read of the device's current plan, with its own backoff once refused."""

    block: ReadBlock
    backoff: Backoff = field(default_factory=Backoff)


class ModbusDevice:
    """One machine polled over a :class:`Link`; see the module docstring for the policy.

    Lifecycle: construct; ``await poll(reporter)`` once per poll period (it returns at once
    while the device backs off); counters ``polls``, ``reads``, ``splits`` for the status.
    """

    def __init__(self, plan: MachinePlan, link: Link) -> None:
        self.plan = plan
        self.link = link
        self.parts = [Part(block) for block in plan.blocks]
        self.backoff = Backoff()
        self.polls = 0
        self.reads = 0
        self.splits = 0
        self.down = False
        self.merge_after_s = MERGE_AFTER_S
        self._refused_at = 0.0

    @property
    def name(self) -> str:
        return self.plan.machine

    async def poll(self, reporter: Reporter) -> None:
        """Read every part that is due and report each tag's value or why it has none."""
        if self.backoff.waiting(time.monotonic()):
            return
        self.polls += 1
        reason = await self.link.ensure()
        if reason is not None:
            self._device_failed(reporter, f"{reason} ({self.name})", self.parts)
            return
        now = time.monotonic()
        queue = [p for p in self.parts if not p.backoff.waiting(now)]
        i = 0
        while i < len(queue):
            part = queue[i]
            ts = now_ms()
            try:
                data = await self.link.read(part.block)
            except ModbusIOError as exc:
                if exc.kind in ("timeout", "connection") or exc.code in DEVICE_CODES:
                    self._device_failed(reporter, f"{exc} ({self.name})", queue[i:], ts)
                    return
                halves = halves_of(part.block) if exc.code in SPLIT_CODES else None
                if halves is not None:
                    queue[i : i + 1] = self._split(part, halves)
                    continue
                self._part_failed(reporter, part, f"{exc} ({self.name})", ts)
                i += 1
                continue
            self.reads += 1
            if part.backoff.failures:
                logger.info("Modbus %s answers again for %s", self.name, part.block.describe())
            part.backoff.succeeded()
            reporter.report_values(ts, decode_block(part.block, data))
            i += 1
        if self.down:
            logger.info("Modbus device %s at %s answers again", self.name, self.link.endpoint)
        self.down = False
        self.backoff.succeeded()
        self._maybe_merge()

    def _maybe_merge(self) -> None:
        """Back to the planned blocks once the split parts have all answered for a while."""
        if len(self.parts) == len(self.plan.blocks) or any(p.backoff.failures
                                                            for p in self.parts):
            return
        if time.monotonic() - self._refused_at >= self.merge_after_s:
            logger.info("Modbus %s: every part answers again; reading the planned %d "
                        "block(s) instead of %d parts", self.name, len(self.plan.blocks),
                        len(self.parts))
            self.parts = [Part(block) for block in self.plan.blocks]

    def _split(self, part: Part, halves: tuple[ReadBlock, ReadBlock]) -> list[Part]:
        """Replace ``part`` in the plan by its two halves (kept for later polls)."""
        new = [Part(h) for h in halves]
        self._refused_at = time.monotonic()
        at = self.parts.index(part)
        self.parts[at : at + 1] = new
        self.splits += 1
        logger.debug("Modbus %s: split %s into %s and %s", self.name, part.block.describe(),
                     halves[0].describe(), halves[1].describe())
        return new

    def _part_failed(self, reporter: Reporter, part: Part, why: str, ts: int) -> None:
        first = part.backoff.failures == 0
        self._refused_at = time.monotonic()
        delay = part.backoff.failed(time.monotonic())
        reporter.report_values(ts, bad_values(part.block, why))
        reporter.report_error(f"{why}; retrying in {delay:g} s", loud=first)

    def _device_failed(self, reporter: Reporter, why: str, parts: list[Part],
                       ts: int | None = None) -> None:
        """The device did not answer: the parts not read are BAD and the device backs off."""
        delay = self.backoff.failed(time.monotonic())
        stamp = now_ms() if ts is None else ts
        for part in parts:
            reporter.report_values(stamp, bad_values(part.block, why))
        reporter.report_error(f"{why}; retrying in {delay:g} s", loud=not self.down)
        self.down = True
