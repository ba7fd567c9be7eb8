"""The worker's detectors and alarm episodes, per source: the processor's detection wiring.

:class:`AlarmStage` joins the catalog's detection layer (:mod:`streams.detection`), the
alarm engine (:mod:`streams.alarms`) and the rules ``on: alarms``. Per closed frame of the
first window size it scores the detectors and turns their evidence into alarm records;
operators' alarm actions and false-positive feedback apply here too. Its state is kept
per source (detectors) and per machine (alarm points and episodes), so the processor can
save, restore and drop the part of one Kafka partition with the rest of its checkpoint.

Lifecycle: ``AlarmStage(catalog, rules)``; ``observe(closed, frame, now_ms)`` per closed
frame; ``apply(kind, value, now_ms, held)`` per operator message;
``tick(now_ms, sources)`` on the timer; ``snapshot(sources)``/``restore(doc, replace=)``/
``drop(sources)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from schemas.aggregates import AggregateFrame
from schemas.alarms import Alarm, AlarmAction, AnomalyFeedback
from schemas.catalog import Catalog
from schemas.events import Anomaly, Command
from streams.alarms import AlarmEngine
from streams.detection import DetectionLayer
from streams.exceptions import AlarmActionError
from streams.rules import RuleEngine
from streams.windows import Closed

__all__ = ["AlarmStage"]

logger = logging.getLogger(__name__)


class AlarmStage:
    """Detectors, alarm engine and rules on alarms over the sources a worker holds."""

    def __init__(self, catalog: Catalog, rules: RuleEngine) -> None:
        self.catalog = catalog
        self.detection = DetectionLayer(catalog)
        self.alarms = AlarmEngine(catalog.alarms)
        self.rules = rules
        self.errors = 0  # closed frames whose detection failed
        self._sources_of: dict[str, set[str]] = {}  # machine path -> its sources
        for m in catalog.machines:
            self._sources_of.setdefault(catalog.machine_path(m), set()).add(m.source)

    def machines(self, sources: Collection[str]) -> set[str]:
        """The machine paths of these sources: the catalog's, and those a source that is
        not in the catalog carried."""
        return {p for s in sources for p in (
            *(self.catalog.machine_path(m) for m in self.catalog.machines_of(s)),
            *self.detection.machines_seen(s))}

    def sources_of(self, asset: str, held: Collection[str] = ()) -> set[str]:
        """The sources that carry a machine's readings: the catalog's, and those of
        ``held`` that carried it."""
        return self._sources_of.get(asset, set()) | {
            s for s in held if asset in self.detection.machines_seen(s)}

    def observe(self, c: Closed, frame: AggregateFrame, now_ms: int
                ) -> tuple[list[Anomaly], list[Alarm]]:
        """Score and learn one closed frame; its anomalies and the alarm records they
        caused. Tags whose window held only bad-quality readings are not learned."""
        s = c.stats
        bad = frozenset(c.tag[i] for i in np.flatnonzero((s.total > 0) & (s.n == 0)).tolist())
        anomalies: list[Anomaly] = []
        alarms: list[Alarm] = []
        try:
            for ev in self.detection.observe(frame, bad, now_ms):
                anomalies.extend(ev.anomalies)
                alarms += self.alarms.observe(ev, now_ms)
        except Exception:  # a detector's bug must not stop the windows (nor kill a tick)
            self.errors += 1
            logger.exception("detection failed on %d windows of %s from %d; their anomalies "
                             "and alarms are lost, the aggregates are not", len(frame),
                             frame.source, min(frame.window_start, default=0))
        return anomalies, alarms

    def on_alarms(self, alarms: list[Alarm], now_ms: int) -> list[Command]:
        return self.rules.on_alarms(alarms, now_ms)

    def apply(self, kind: str, value: bytes | None, now_ms: int,
              held: Mapping[int, Collection[str]]) -> tuple[list[Alarm], int]:
        """Decode and apply an operator's message (``kind`` "action" or "feedback"); its
        records and the partition of ``held`` (partition -> sources) holding the alarm's
        machine. ContractError if malformed, AlarmActionError if it cannot apply here."""
        msg = AlarmAction.decode(value) if kind == "action" else AnomalyFeedback.decode(value)
        wanted = self.sources_of(msg.asset, {s for ss in held.values() for s in ss})
        owner = next((p for p in sorted(held) if wanted & set(held[p])), None)
        if owner is None:
            raise AlarmActionError(
                f"alarm {msg.alarm_id}: machine {msg.asset} is not held by this worker (its "
                f"sources {sorted(wanted) or 'none: not in the catalog'}; partitions held "
                f"{sorted(held)}); operator messages must be keyed by the machine's source, "
                "as readings are, to reach the worker that holds it", alarm_id=msg.alarm_id)
        if isinstance(msg, AlarmAction):
            return self.action(msg, now_ms), owner
        return self.feedback(msg, now_ms), owner

    def action(self, action: AlarmAction, now_ms: int) -> list[Alarm]:
        """An operator's ack/shelve/unshelve (AlarmActionError if it cannot apply)."""
        return self.alarms.act(action, now_ms)

    def feedback(self, fb: AnomalyFeedback, now_ms: int) -> list[Alarm]:
        """An operator's false positive: the episode closes and the thresholds of the
        detectors and tags that drove it go up (AlarmActionError if it cannot apply)."""
        alarms, raises = self.alarms.false_positive(fb, now_ms)
        for detector, subject, times in raises:
            if not self.detection.raise_threshold(detector, subject, times):
                logger.warning("feedback on alarm %s: no detector %s on %s here to raise",
                               fb.alarm_id, detector, subject)
        return alarms

    def tick(self, now_ms: int, sources: Collection[str] | None = None) -> list[Alarm]:
        """Shelving that expired, on the machines of ``sources`` (default all)."""
        return self.alarms.tick(now_ms, None if sources is None else self.machines(sources))

    # -- persistence --------------------------------------------------------------------
    def snapshot(self, sources: Collection[str] | None = None, *,
                 strict: bool = True) -> dict[str, Any]:
        """Detectors of ``sources`` (default all) and the alarms of their machines. The
        detectors hold NaN (no value yet): ``strict`` writes them as ``{"$f": "nan"}``,
        so the document is strict JSON; otherwise they stay floats, and the per-tag
        detectors' arrays stay the live NumPy arrays (encode them at once: the checkpoint
        codec stores them as raw bytes)."""
        doc = {"detection": self.detection.snapshot(sources, arrays=not strict),
               "alarms": self.alarms.snapshot(None if sources is None
                                              else self.machines(sources))}
        return _strict(doc) if strict else doc

    def restore(self, doc: dict[str, Any], *, replace: bool = True) -> None:
        """Take a :meth:`snapshot`, instead of all state (``replace``) or besides it."""
        doc = _loose(doc)
        self.detection.restore(doc["detection"], replace=replace)
        self.alarms.restore(doc["alarms"], replace=replace)

    def drop(self, sources: Collection[str]) -> None:
        """Forget these sources' detectors and their machines' alarms."""
        machines = self.machines(sources)  # before the detectors that know them go
        self.detection.drop(sources)
        self.alarms.drop(machines)


def _strict(x: Any) -> Any:
    """``x`` with every non-finite float written as ``{"$f": repr}`` (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else {"$f": repr(x)}
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_strict(v) for v in x]
    return x


def _loose(x: Any) -> Any:
    """The inverse of :func:`_strict`."""
    if isinstance(x, dict):
        if len(x) == 1 and "$f" in x:
            return float(x["$f"])
        return {k: _loose(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_loose(v) for v in x]
    return x
