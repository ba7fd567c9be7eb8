"""The plant as the dashboard knows it: pure state, no I/O (tests call it without Kafka).

Lifecycle: :meth:`PlantState.apply` each decoded message (in topic order); it returns the
events to push to every browser now (alarms, anomalies, commands). Twin updates and window
results are coalesced instead: :meth:`take_twins` and :meth:`take_aggregates` hand over
what changed since the last call (the server calls them a few times a second), so a plant
that updates its twins faster than a browser can draw costs the browser nothing more.
:meth:`snapshot` is what a browser gets when it (re)connects.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from millstream.dashboard.messages import SEVERITIES, Kind

__all__ = ["PlantState", "alarm_shown", "machine_of"]

# an episode in these states is over or set aside: not listed, not colouring a card
_HIDDEN_STATES = frozenset({"closed"})


def machine_of(tag: str) -> str:
    """The machine path of a tag path (``enterprise/site/area/line/machine/tag``)."""
    return tag.rsplit("/", 1)[0]


def alarm_shown(alarm: dict[str, Any]) -> bool:
    return alarm.get("state") not in _HIDDEN_STATES


def _newer(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    """Whether alarm record ``a`` supersedes ``b`` (a higher version, or the same one later)."""
    if b is None:
        return True
    return int(a.get("version") or 0) >= int(b.get("version") or 0)


class PlantState:
    """``trend_window_ms``: the window size whose results make the live trend (the
    catalog's smallest); ``trend_points`` of them are kept per tag."""

    def __init__(self, trend_window_ms: int, *, trend_points: int = 300,
                 anomalies_kept: int = 300, commands_kept: int = 200) -> None:
        self.trend_window_ms = trend_window_ms
        self.trend_points = trend_points
        self.twins: dict[str, dict[str, Any]] = {}
        self.alarms: dict[str, dict[str, Any]] = {}  # alarm_id -> newest record, not closed
        self.anomalies: deque[dict[str, Any]] = deque(maxlen=anomalies_kept)
        self.commands: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.commands_kept = commands_kept
        # tag -> (window_start, mean, min, max) of its smallest windows: compact, since
        # every tag of the plant has one (10,000 tags x 300 points: ~300 MB of tuples)
        self.trend: dict[str, deque[tuple[int, float, float, float]]] = {}
        self.windows: dict[str, dict[int, dict[str, Any]]] = {}  # tag -> size -> newest
        self._twins_changed: dict[str, dict[str, Any] | None] = {}
        self._aggregates_changed: dict[str, list[dict[str, Any]]] = {}
        self._versions: dict[str, int] = {}  # alarm_id -> version seen (closed ones too)
        self._alerts: dict[str, str | None] = {}  # machine -> severity last handed out

    # -- input ---------------------------------------------------------------------------
    def apply(self, kind: Kind, key: str | None, doc: Any) -> list[tuple[str, Any]]:
        """Take one decoded message; returns (event, data) pairs to push now."""
        if kind is Kind.TWIN:
            self._twin(key, doc)
            return []
        if kind is Kind.AGGREGATES:
            for row in doc:
                self._aggregate(row)
            return []
        if kind is Kind.ALARM:
            return self._alarm(doc)
        if kind is Kind.ANOMALY:
            self.anomalies.append(doc)
            return [("anomaly", doc)]
        return self._command(kind, doc)

    def _twin(self, key: str | None, doc: dict[str, Any] | None) -> None:
        machine = doc["machine"] if doc is not None else key
        if machine is None:
            return
        if doc is None:  # a tombstone: the machine left the plant
            self.twins.pop(machine, None)
        elif doc.get("updated", 0) < self.twins.get(machine, {}).get("updated", 0):
            return  # an older record (a redelivery, another partition's straggler)
        else:
            self.twins[machine] = doc
        self._twins_changed[machine] = doc

    def _aggregate(self, row: dict[str, Any]) -> None:
        tag, size = row["tag"], int(row["window_ms"])
        by_size = self.windows.setdefault(tag, {})
        last = by_size.get(size)
        if last is None or row["window_start"] >= last["window_start"]:
            by_size[size] = row
        if size == self.trend_window_ms:
            trend = self.trend.get(tag)
            if trend is None:
                trend = self.trend[tag] = deque(maxlen=self.trend_points)
            trend.append((row["window_start"], row["mean"], row["min"], row["max"]))
        self._aggregates_changed.setdefault(tag, []).append(row)

    def _alarm(self, doc: dict[str, Any]) -> list[tuple[str, Any]]:
        alarm_id = doc["alarm_id"]
        version = int(doc.get("version") or 0)
        if version < self._versions.get(alarm_id, -1):
            return []  # an older state change arriving late
        self._versions[alarm_id] = version
        if alarm_shown(doc):
            self.alarms[alarm_id] = doc
        else:
            self.alarms.pop(alarm_id, None)
        return [("alarm", doc)]

    def _command(self, kind: Kind, doc: dict[str, Any]) -> list[tuple[str, Any]]:
        """An audit record or a command result, merged into one log entry per command."""
        cid = doc.get("command_id") or f"unnamed-{doc.get('audit_id', '')}"
        entry = self.commands.get(cid) or {"command_id": cid}
        if kind is Kind.AUDIT:
            for name in ("issuer", "rule", "reason", "machine", "setpoint", "value",
                         "value_before", "value_after", "checks", "dry_run"):
                if doc.get(name) not in (None, ""):
                    entry[name] = doc[name]
            entry.update(verdict=doc["verdict"], detail=doc["detail"], at=doc["at"])
        else:
            entry.setdefault("setpoint", doc["setpoint"])
            entry.setdefault("value", doc["requested"])
            entry.setdefault("machine", machine_of(doc["setpoint"]))
            entry.update(verdict=doc["status"], detail=doc["detail"], readback=doc["readback"],
                         at=max(int(entry.get("at") or 0), doc["executed_at"]))
        self.commands[cid] = entry
        self.commands.move_to_end(cid)
        while len(self.commands) > self.commands_kept:
            self.commands.popitem(last=False)
        return [("command", entry)]

    # -- output --------------------------------------------------------------------------
    def take_twins(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Twin records changed since the last call, and machines removed."""
        changed, self._twins_changed = self._twins_changed, {}
        return ([d for d in changed.values() if d is not None],
                [m for m, d in changed.items() if d is None])

    def take_aggregates(self) -> dict[str, list[dict[str, Any]]]:
        """Window results per tag since the last call."""
        changed, self._aggregates_changed = self._aggregates_changed, {}
        return changed

    def take_alerts(self) -> dict[str, str | None]:
        """Machines whose alarm colour changed since the last call: machine -> the highest
        severity of its active alarms, or None (normal)."""
        now = self.alerts()
        changed = {m: s for m, s in now.items() if self._alerts.get(m) != s}
        changed.update({m: None for m in self._alerts if m not in now})
        self._alerts = {m: s for m, s in now.items() if s is not None}
        return changed

    def tag_detail(self, tag: str) -> dict[str, Any]:
        """What the tag view starts from: the live trend so far, the newest window of each
        size, and the tag's recent anomalies."""
        trend = [{"window_start": t, "mean": mean, "min": lo, "max": hi}
                 for t, mean, lo, hi in self.trend.get(tag, ())]
        return {"tag": tag, "trend": trend,
                "windows": sorted(self.windows.get(tag, {}).values(),
                                  key=lambda r: r["window_ms"]),
                "anomalies": [a for a in self.anomalies if a["tag"] == tag]}

    def snapshot(self) -> dict[str, Any]:
        return {"twins": list(self.twins.values()),
                "alarms": sorted(self.alarms.values(), key=lambda a: a["started_at"]),
                "anomalies": list(self.anomalies),
                "commands": list(self.commands.values()),
                "alerts": {m: s for m, s in self.alerts().items() if s is not None}}

    def alerts(self) -> dict[str, str | None]:
        """Each machine's colour: the highest severity of its active alarms, or None. The
        twin's alarm list and the alarm topic are merged; the newer record of an episode
        wins. Shelved, suppressed and closed episodes colour nothing."""
        merged: dict[str, dict[str, dict[str, Any]]] = {}
        for machine, twin in self.twins.items():
            merged[machine] = {str(a.get("alarm_id", i)): a
                               for i, a in enumerate(twin.get("alarms") or [])
                               if isinstance(a, dict)}
        for a in self.alarms.values():
            mine = merged.setdefault(a["asset"], {})
            if _newer(a, mine.get(a["alarm_id"])):
                mine[a["alarm_id"]] = a
        return {m: _highest(list(alarms.values())) for m, alarms in merged.items()}


def _active(alarm: dict[str, Any]) -> bool:
    if alarm.get("state") in ("shelved", "suppressed", "closed"):
        return False
    active = alarm.get("active")
    return active if isinstance(active, bool) else alarm.get("state") in ("active",
                                                                          "acknowledged")


def _highest(alarms: list[dict[str, Any]]) -> str | None:
    ranks = [SEVERITIES.index(s) if s in SEVERITIES else SEVERITIES.index("high")
             for s in (a.get("severity") for a in alarms if _active(a))]
    return SEVERITIES[max(ranks)] if ranks else None
