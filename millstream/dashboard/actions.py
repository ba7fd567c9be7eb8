"""Alarm acknowledge and shelve from the page: the one thing the dashboard writes.

An adapter over the alarms stage's own operator action (``millstream alarm ack|shelve``):
the same :class:`schemas.alarms.AlarmAction` message on ``<prefix>.alarm-actions``, keyed
by the catalog source of the alarm's machine so that it reaches the worker that holds the
machine's alarms. When this millstream has no alarms stage (no ``schemas.alarms``), or the
settings turn actions off, :attr:`AlarmActions.available` is False, the page shows no
buttons and the server refuses the request with the reason.
"""

from __future__ import annotations

import getpass
import importlib
import importlib.util
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from schemas.catalog import Catalog
from schemas.events import now_ms
from schemas.exceptions import MillstreamError

__all__ = ["VERBS", "AlarmActionError", "AlarmActions"]

logger = logging.getLogger(__name__)

VERBS = ("ack", "shelve")
MAX_SHELVE_S = 24 * 3600.0


class AlarmActionError(MillstreamError):
    """An action the dashboard cannot send; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _alarms_module() -> Any | None:
    """``schemas.alarms`` when the alarms stage is part of this millstream, else None."""
    if importlib.util.find_spec("schemas.alarms") is None:
        return None
    return importlib.import_module("schemas.alarms")


class AlarmActions:
    """Lifecycle: construct; :meth:`send` (blocking: call it off the event loop);
    :meth:`close`. ``enabled``: the ``dashboard_alarm_actions`` setting."""

    def __init__(self, bootstrap: str, config: Mapping[str, str], topic_prefix: str,
                 catalog: Catalog, *, enabled: bool = True, actor: str | None = None) -> None:
        self.bootstrap, self.config = bootstrap, dict(config)
        self.topic = f"{topic_prefix}.alarm-actions"
        self.module = _alarms_module() if enabled else None
        self.enabled = enabled
        self.actor = actor or f"dashboard:{getpass.getuser()}"
        self.sources = {catalog.machine_path(m): m.source for m in catalog.machines}
        self._producer: Any = None

    @property
    def available(self) -> bool:
        return self.module is not None

    def why_not(self) -> str:
        if not self.enabled:
            return ("alarm actions are off on this dashboard (MILLSTREAM_DASHBOARD_ALARM_"
                    "ACTIONS=false); use `millstream alarm ack|shelve ID`")
        return ("this millstream has no alarms stage (schemas.alarms), so there is nothing to "
                "acknowledge or shelve")

    def send(self, alarm: dict[str, Any], verb: str, note: str = "",
             shelve_s: float | None = None) -> dict[str, Any]:
        """Publish ``verb`` on ``alarm`` (its newest record); returns the message sent."""
        if self.module is None:
            raise AlarmActionError(self.why_not(), status=501)
        if verb not in VERBS:
            raise AlarmActionError(f"action {verb!r} is not one of {list(VERBS)}")
        if verb == "shelve" and not (shelve_s is not None and 0 < shelve_s <= MAX_SHELVE_S):
            raise AlarmActionError(f"shelve needs a duration in seconds, 0 < for <= "
                                   f"{MAX_SHELVE_S:.0f}; got {shelve_s!r}")
        asset = str(alarm["asset"])
        source = self.sources.get(asset)
        if source is None:
            raise AlarmActionError(f"alarm {alarm['alarm_id']} is on {asset}, which is not in "
                                   "the dashboard's catalog (MILLSTREAM_CATALOG); give it the "
                                   "worker's catalog", status=409)
        message = self.module.AlarmAction(
            uuid.uuid4().hex, str(alarm["alarm_id"]), asset, verb, self.actor, note[:500],
            now_ms(), shelve_s if verb == "shelve" else None)
        producer = self._producer_()
        producer.produce(self.topic, key=source.encode(), value=message.encode())
        if producer.flush(10) != 0:
            raise AlarmActionError(f"Kafka at {self.bootstrap} did not acknowledge the "
                                   f"{verb} of {alarm['alarm_id']} on {self.topic}; check "
                                   "that it is up and try again", status=503)
        logger.info("%s: %s %s (%s)", self.actor, verb, alarm["alarm_id"], asset)
        doc: dict[str, Any] = message.to_dict()
        return doc

    def _producer_(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer({"bootstrap.servers": self.bootstrap, "acks": "all",
                                       **self.config})
        return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None
