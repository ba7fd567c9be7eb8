"""One setpoint write: write, read back within the tolerance, then the PLC handshake.

A write that does not read back within the tolerance, or that the PLC does not
acknowledge, is FAILED, never APPLIED. Device errors are retried ``attempts`` times with
backoff, unless ``give_up()`` says to stop (the executor stops, or the command expired).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.catalog import Catalog, TagSpec
from schemas.events import CommandStatus
from sinks.devices import DeviceError, DevicePool

__all__ = ["WriteOutcome", "matches", "write_setpoint"]

logger = logging.getLogger(__name__)

_ACK_POLL_S = 0.05


def matches(requested: float, readback: float, tolerance: float | None = None) -> bool:
    """Whether the device holds what was written: within ``tolerance`` (the catalog's),
    else within float32 and rounding noise."""
    if tolerance is not None:
        return abs(readback - requested) <= tolerance
    return abs(readback - requested) <= 1e-3 * max(1.0, abs(requested))


@dataclass
class WriteOutcome:
    status: CommandStatus
    detail: str
    readback: float | None = None
    checks: dict[str, str] = field(default_factory=dict)


async def write_setpoint(devices: DevicePool, catalog: Catalog, path: str, value: float, *,
                         attempts: int, give_up: Callable[[], bool]) -> WriteOutcome:
    spec = catalog.info(path).spec
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            readback = await devices.write_and_read_back(path, value)
        except DeviceError as exc:
            error = f"{exc} (attempt {attempt} of {attempts})"
            logger.warning("write %s=%g: %s", path, value, error)
            if give_up():
                break
            await asyncio.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))
            continue
        if not matches(value, readback, spec.tolerance):
            tol = f"tolerance {spec.tolerance:g}" if spec.tolerance is not None else "rounding"
            return WriteOutcome(
                CommandStatus.FAILED,
                f"wrote {value:g} but the device reads back {readback:g} (beyond {tol}); "
                "check the device's limits or whether another writer owns the tag",
                readback, {"write": "ok", "readback": f"refused: read back {readback:g}"})
        checks = {"write": "ok", "readback": "ok"}
        if spec.handshake is None:
            checks["handshake"] = "n/a"
            return WriteOutcome(CommandStatus.APPLIED,
                                f"wrote {value:g}, read back {readback:g}", readback, checks)
        return await _handshake(devices, catalog, path, spec, value, readback, checks)
    return WriteOutcome(CommandStatus.FAILED,
                        f"device error, gave up: {error}; check the device and its endpoint",
                        None, {"write": f"refused: {error}"})


async def _handshake(devices: DevicePool, catalog: Catalog, path: str, spec: TagSpec,
                     value: float, readback: float, checks: dict[str, str]) -> WriteOutcome:
    """Ack 0 first, strobe 1, wait for ack 1, strobe 0: the PLC confirms it took the new
    setpoint. An ack still up from the previous handshake (the PLC clears it only when it
    sees the strobe drop) must not count as this one's, so the strobe waits for it to drop.
    """
    hs = spec.handshake
    assert hs is not None
    machine = path.rsplit("/", 1)[0]
    strobe, ack = f"{machine}/{hs.strobe}", f"{machine}/{hs.ack}"
    deadline = time.monotonic() + hs.timeout_ms / 1000
    wrote = f"wrote {value:g}, read back {readback:g}"
    stale = acked = False
    try:
        if not await _wait_for(devices, ack, False, deadline):
            stale = True
        else:
            await devices.write_and_read_back(strobe, 1.0)
            acked = await _wait_for(devices, ack, True, deadline)
    except DeviceError as exc:
        checks["handshake"] = f"refused: {exc}"
        return WriteOutcome(CommandStatus.FAILED, f"{wrote}, but the handshake failed: {exc}",
                            readback, checks)
    finally:
        if not stale:
            try:
                await devices.write_and_read_back(strobe, 0.0)
            except DeviceError as exc:
                logger.warning("could not clear the strobe %s: %s", strobe, exc)
    if stale:
        checks["handshake"] = f"refused: {ack} still 1 from an earlier handshake"
        return WriteOutcome(CommandStatus.FAILED, (
            f"{wrote}, but {ack} was still 1 from an earlier handshake and did not drop "
            f"within {hs.timeout_ms} ms, so {strobe} was not set; the PLC must clear its ack "
            "when the strobe drops: check the PLC program"), readback, checks)
    if not acked:
        checks["handshake"] = f"refused: no ack on {ack} within {hs.timeout_ms} ms"
        return WriteOutcome(CommandStatus.FAILED, (
            f"{wrote}, but the PLC did not acknowledge: {ack} stayed 0 for "
            f"{hs.timeout_ms} ms after {strobe} was set; check the PLC program"),
            readback, checks)
    checks["handshake"] = "ok"
    return WriteOutcome(CommandStatus.APPLIED, f"{wrote}, acknowledged by the PLC on {ack}",
                        readback, checks)


async def _wait_for(devices: DevicePool, ack: str, high: bool, deadline: float) -> bool:
    """Poll ``ack`` until it is 1 (``high``) or 0, or the deadline passes (then False)."""
    while True:
        if (await devices.read_value(ack) >= 0.5) == high:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_ACK_POLL_S)
