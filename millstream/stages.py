"""Every stage at a glance, for ``millstream status``: up or down, lag, rates, last error.

A stage is found by its status file in a run folder (``millstream demo`` gives each stage
one, and the file names the stage's health endpoint in ``metrics_url``) or by the URL of
its endpoint (``--url``, e.g. a pod's through ``kubectl port-forward``). Its state comes
from ``/healthz`` and ``/readyz`` when it serves them, else from the age of its file.
Rates are the change of its counters between two looks ``interval`` seconds apart.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from schemas.status import read_status

__all__ = ["STALE_S", "StageView", "Target", "find_run_dir", "look", "targets_in"]

STALE_S = 10.0  # a status file not rewritten for this long belongs to a stage that is gone
_TIMEOUT_S = 4.0  # /readyz may wait up to 2 s for Kafka


@dataclass(frozen=True, slots=True)
class Target:
    """Where to look for one stage: its status file, its endpoint, or both."""

    status_file: Path | None = None
    url: str | None = None


@dataclass(slots=True)
class StageView:
    """One row of ``millstream status``. ``state``: up, not ready, down or stopped."""

    name: str
    stage: str
    state: str
    reason: str | None = None
    lag: int | None = None
    in_per_s: float | None = None
    out_per_s: float | None = None
    errors: int | None = None
    last_error: str | None = None
    url: str | None = None
    status_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def find_run_dir(data_dir: Path) -> Path | None:
    """The newest run folder under ``data_dir/runs`` that holds status files."""
    runs = data_dir / "runs"
    if not runs.is_dir():
        return None
    found = [d for d in runs.iterdir() if d.is_dir() and any(d.glob("*.json"))]
    return max(found, key=lambda d: d.stat().st_mtime, default=None)


def targets_in(run_dir: Path) -> list[Target]:
    return [Target(status_file=p) for p in sorted(run_dir.glob("*.json"))
            if not p.name.startswith(".")]


# -- what each stage's counters mean ---------------------------------------------------------

def _int(doc: Mapping[str, Any], *keys: str) -> int | None:
    vals = [doc.get(k) for k in keys]
    nums = [int(v) for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(nums) if nums else None


def _connector_lag(doc: Mapping[str, Any]) -> int | None:
    p, d, f = (_int(doc, k) for k in ("produced", "delivered", "failed"))
    return None if p is None or d is None else max(0, p - d - (f or 0))


def _inserted(doc: Mapping[str, Any]) -> int | None:
    ins = doc.get("inserted")
    return _int(ins, *ins) if isinstance(ins, Mapping) else None


def _total(doc: Mapping[str, Any], key: str) -> int | None:
    counts = doc.get(key)
    return _int(counts, *counts) if isinstance(counts, Mapping) else None


_Count = Callable[[Mapping[str, Any]], int | None]
# stage -> (in, out, lag, errors): connector readings read / confirmed by Kafka; streams
# readings consumed / window results; sink messages consumed / rows inserted; executor
# commands received / decided; dashboard messages consumed / events sent to pages
_FLOWS: dict[str, tuple[_Count, _Count, _Count, _Count]] = {
    "connector": (lambda d: _int(d, "produced"), lambda d: _int(d, "delivered"),
                  _connector_lag, lambda d: _int(d, "errors", "failed", "dead_lettered")),
    "streams": (lambda d: _int(d, "readings"), lambda d: _int(d, "aggregates"),
                lambda d: _int(d, "lag"), lambda d: _int(d, "deadletters")),
    "sink": (lambda d: _int(d, "consumed"), _inserted, lambda d: _int(d, "lag"),
             lambda d: _int(d, "insert_errors", "deadlettered")),
    "executor": (lambda d: _int(d, "received"),
                 lambda d: _int(d, "applied", "rejected", "failed", "dry-run"),
                 lambda d: _int(d, "lag"), lambda d: _int(d, "failed", "deadlettered")),
    "dashboard": (lambda d: _total(d, "consumed"), lambda d: _int(d, "events_sent"),
                  lambda d: _int(d, "lag"), lambda d: _total(d, "invalid")),
}


def stage_of(doc: Mapping[str, Any]) -> str | None:
    """Which stage wrote ``doc`` (older files name no stage: their keys tell)."""
    stage = doc.get("stage")
    if isinstance(stage, str):
        return stage
    for key, name in (("source", "connector"), ("app_id", "streams"), ("inserted", "sink"),
                      ("received", "executor")):
        if key in doc:
            return name
    return None


def name_of(stage: str, doc: Mapping[str, Any]) -> str:
    if stage == "connector":
        return f"connect {doc.get('source', '?')}"
    return {"streams": "worker"}.get(stage, stage)


def _stamp(doc: Mapping[str, Any]) -> float | None:
    """When ``doc`` was written (Unix s), from its own field."""
    ms = doc.get("updated_at", doc.get("at"))
    return ms / 1000 if isinstance(ms, int | float) else None


# -- looking -------------------------------------------------------------------------------

def _get(url: str) -> tuple[int | None, dict[str, Any] | None, str | None]:
    """HTTP status and JSON body, or (None, None, why) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as r:
            return r.status, json.loads(r.read() or b"{}"), None
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = None
        return exc.code, body, None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, None, f"no answer at {url} ({getattr(reason, 'strerror', None) or reason})"


@dataclass(slots=True)
class _Look:
    doc: dict[str, Any] | None
    state: str
    reason: str | None
    url: str | None
    at: float


def _look(target: Target) -> _Look:
    doc = read_status(target.status_file) if target.status_file else None
    url = target.url or (doc or {}).get("metrics_url")
    now = time.time()
    if url:
        url = str(url).rstrip("/")
        code, alive, why = _get(url + "/healthz")
        if code is None:
            gone = doc is not None and doc.get("running") is False
            return _Look(doc, "stopped" if gone else "down", None if gone else why, url, now)
        fresh_code, fresh, _ = _get(url + "/status")
        doc = fresh if fresh_code == 200 and fresh else doc
        if code != 200:
            return _Look(doc, "down", (alive or {}).get("reason", f"/healthz {code}"), url, now)
        code, body, why = _get(url + "/readyz")
        if code == 200:
            return _Look(doc, "up", None, url, now)
        return _Look(doc, "not ready", (body or {}).get("reason") or why, url, now)
    if doc is None:
        return _Look(None, "down", f"no status in {target.status_file}", None, now)
    if doc.get("running") is False:
        return _Look(doc, "stopped", None, None, now)
    stamp = _stamp(doc)
    if stamp is not None and now - stamp > STALE_S:
        return _Look(doc, "down", f"its status file was last written {now - stamp:.0f} s ago",
                     None, now)
    return _Look(doc, "up", None, None, now)


def _rate(count: _Count, a: _Look, b: _Look) -> float | None:
    if a.doc is None or b.doc is None:
        return None
    x, y = count(a.doc), count(b.doc)
    ta, tb = _stamp(a.doc) or a.at, _stamp(b.doc) or b.at
    if x is None or y is None or tb <= ta:
        return None
    return round((y - x) / (tb - ta), 1)


def _view(target: Target, first: _Look, second: _Look | None) -> StageView | None:
    last = second or first
    doc = last.doc or first.doc
    stage = stage_of(doc) if doc else None
    if doc is None or stage is None:
        if target.url is None:  # a file that is not a stage's status
            return None
        return StageView(target.url, "?", last.state, last.reason, url=target.url)
    flows = _FLOWS.get(stage)
    view = StageView(name_of(stage, doc), stage, last.state, last.reason, url=last.url,
                     status_file=str(target.status_file) if target.status_file else None)
    last_error = doc.get("last_error")
    view.last_error = str(last_error) if last_error else None
    if flows is not None:
        view.lag, view.errors = flows[2](doc), flows[3](doc)
        if second is not None:
            view.in_per_s = _rate(flows[0], first, second)
            view.out_per_s = _rate(flows[1], first, second)
    return view


def look(targets: Iterable[Target], interval: float = 2.0) -> list[StageView]:
    """Look at every target (in parallel), twice ``interval`` s apart for the rates
    (once when ``interval`` is 0)."""
    items = list(targets)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        first = list(pool.map(_look, items))
        second: list[_Look | None] = [None] * len(items)
        if interval > 0:
            time.sleep(interval)
            second = list(pool.map(_look, items))
    views = [_view(t, a, b) for t, a, b in zip(items, first, second, strict=True)]
    return sorted((v for v in views if v is not None), key=lambda v: (
        list(_FLOWS).index(v.stage) if v.stage in _FLOWS else len(_FLOWS), v.name))
