"""paho-mqtt's network loop waits with ``select.select``, which cannot watch a descriptor
numbered 1024 or higher (FD_SETSIZE). paho turns the resulting ``ValueError`` into "connection
lost" and reconnects, so in a process with many open files (a connector with hundreds of
OPC-UA and Modbus sockets, spool segments, Kafka connections) an MQTT client closes every new
connection before sending CONNECT and never says why (paho-mqtt issues #183 and #819; the
broker logs "Client <unknown> closed its connection" every few seconds).

``use_poll()`` gives paho's module a ``select`` built on ``poll()``, which has no such limit
and keeps ``select.select``'s contract: the same objects back, ``ValueError`` for a closed
socket (descriptor -1) and ``TypeError`` for ``None``, which paho's loop handles as before.
:func:`mqtt_client` is how millstream makes a paho client: with it, and with paho's
version 2 callbacks.
"""

from __future__ import annotations

import select
import types
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as paho_client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

_READ = select.POLLIN | select.POLLPRI
_FAILED = select.POLLHUP | select.POLLERR | select.POLLNVAL


def _fd(obj: Any) -> int:
    fileno = getattr(obj, "fileno", None)
    fd = obj if isinstance(obj, int) else fileno() if fileno is not None else None
    if not isinstance(fd, int):
        raise TypeError(f"{obj!r} has no file descriptor")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def poll_select(rlist: Sequence[Any], wlist: Sequence[Any], xlist: Sequence[Any],
                timeout: float | None = None) -> tuple[list[Any], list[Any], list[Any]]:
    """``select.select`` for readiness to read and write, on ``poll()``; ``xlist`` is only
    checked for valid descriptors (paho passes none)."""
    wanted: dict[int, int] = {}
    for obj in rlist:
        fd = _fd(obj)
        wanted[fd] = wanted.get(fd, 0) | _READ
    for obj in wlist:
        fd = _fd(obj)
        wanted[fd] = wanted.get(fd, 0) | select.POLLOUT
    for obj in xlist:
        _fd(obj)
    poller = select.poll()
    for fd, mask in wanted.items():
        poller.register(fd, mask)
    if timeout is not None and timeout < 0:
        raise ValueError("timeout must be non-negative")
    ready = dict(poller.poll(None if timeout is None else timeout * 1000.0))
    readable = [o for o in rlist if ready.get(_fd(o), 0) & (_READ | _FAILED)]
    writable = [o for o in wlist if ready.get(_fd(o), 0) & (select.POLLOUT | _FAILED)]
    return readable, writable, []


_POLL_MODULE = types.SimpleNamespace(select=poll_select, error=OSError)


def use_poll() -> None:
    """Make every paho client in this process wait with ``poll()`` (idempotent)."""
    paho_client.select = _POLL_MODULE  # type: ignore[assignment]


def mqtt_client(client_id: str, *, protocol: MQTTProtocolVersion = paho_client.MQTTv5,
                **kwargs: Any) -> paho_client.Client:
    """A paho client (version 2 callbacks) whose loop waits with ``poll()``."""
    use_poll()
    return paho_client.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                              protocol=protocol, **kwargs)
