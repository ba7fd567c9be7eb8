"""Records in the twin and alarm contracts, written by hand for the dashboard's tests: a
``millstream.twin.v1`` value for a catalog machine, a ``millstream.alarms.v1`` episode,
and the two topics where a test needs them without the stream workers."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic

from schemas.catalog import Catalog
from schemas.events import now_ms

__all__ = ["alarm_record", "create_twin_topics", "twin_record"]

QUALITY = ("GOOD", "UNCERTAIN", "BAD")
# what the twin keeps of an alarm episode (its contract's alarm entries)
_TWIN_ALARM = ("alarm_id", "severity", "state", "message", "started_at", "tags", "active",
               "acknowledged", "version")


def create_twin_topics(bootstrap: str, prefix: str) -> tuple[str, str]:
    """``<prefix>.twin`` (compacted) and ``<prefix>.alarms``, as those stages create them,
    where missing (``ensure_topics`` creates the twin topic with millstream's others)."""
    twin, alarms = f"{prefix}.twin", f"{prefix}.alarms"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [NewTopic(twin, 1, 1, config={"cleanup.policy": "compact"}), NewTopic(alarms, 1, 1)]
    missing = [t for t in new if t.topic not in existing]
    for f in (admin.create_topics(missing) if missing else {}).values():
        f.result(timeout=30)
    return twin, alarms


def twin_record(catalog: Catalog, machine: str, tags: dict[str, dict[str, Any]], *,
                state: str = "running", alarms: list[dict[str, Any]] | None = None,
                last_command: dict[str, Any] | None = None,
                oee: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``millstream.twin.v1`` value for ``machine`` (a catalog name) with ``tags``
    (tag name -> {"value", "quality", "ts"}); unit and range come from the catalog."""
    spec = next(m for m in catalog.machines if m.name == machine)
    now = now_ms()
    return {
        "schema": "millstream.twin.v1", "machine": catalog.machine_path(spec),
        "site": catalog.site, "area": spec.area, "line": spec.line, "name": spec.name,
        "state": state, "state_since": now, "updated": now,
        "tags": {t.name: {"path": catalog.tag_path(spec, t), "value": v.get("value"),
                          "text": v.get("text"), "unit": t.unit,
                          "quality": v.get("quality", "GOOD"), "ts": v.get("ts", now),
                          "low": t.low, "high": t.high}
                 for t in spec.tags if (v := tags.get(t.name)) is not None},
        "alarms": alarms or [], "last_command": last_command, "oee": oee, "energy": None,
    }


def alarm_record(asset: str, tags: list[str], message: str, *, severity: str = "high",
                 state: str = "active", version: int = 1, alarm_id: str | None = None,
                 started_at: int | None = None, score: float = 2.0) -> dict[str, Any]:
    """A ``millstream.alarms.v1`` value (every field of the alarms stage's contract)."""
    now = now_ms()
    active = state in ("active", "acknowledged")
    return {
        "schema": "millstream.alarms.v1", "alarm_id": alarm_id or uuid.uuid4().hex,
        "asset": asset, "tags": tags, "severity": severity, "state": state,
        "message": message, "started_at": started_at or now, "ended_at": None,
        "updated_at": now, "version": version, "active": active,
        "acknowledged": state in ("acknowledged", "closed"), "action": "raised",
        "actor": "streams", "note": "", "score": score, "detectors": ["stand-in"],
        "shelved_until": None,
    }
