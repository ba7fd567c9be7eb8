"""Every detector of the catalog over every source, one closed window at a time.

:class:`DetectionLayer` keeps, per source, the tag layout and one runner per catalog
detector. Per closed window of the first size it scores every runner, turns their hits into
:class:`Anomaly` events (each with its tag or machine, window, score, threshold, detector
and ranked drivers) and gives each machine's window as :class:`AssetEvidence` (its highest
score over every detector, its anomalies, whether it runs) for the alarm engine. Then it
learns: only good-quality windows (``min_good_share``) of running machines; a tag's
detectors not from the tag's flagged windows, a machine's not from any flagged window of
the machine. A machine that is not running (its run-state tag, ``alarms.run_state``) is
neither scored nor learned: its data is not normal operation.

Lifecycle: ``DetectionLayer(catalog)``; ``observe(frame, bad_tags, now_ms)`` per closed
frame of the first window size; ``raise_threshold(...)`` on operator feedback;
``snapshot(sources)``/``restore(snap)`` (plain data; detectors that hold river models are
pickled inside, as base64 text).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import river

from schemas.aggregates import AggregateFrame
from schemas.catalog import Catalog
from schemas.events import Anomaly
from streams.detect import anomaly_id
from streams.detection.layout import SourceLayout, WindowMatrix
from streams.detection.runners import AssetRunner, Hit, Runner, make_detector, runner_for
from streams.exceptions import StateVersionError

__all__ = ["STATE_VERSION", "AssetEvidence", "DetectionLayer"]

logger = logging.getLogger(__name__)

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class AssetEvidence:
    """One machine's window as the alarm engine sees it."""

    asset: str  # the machine's ISA-95 path
    window_start: int
    window_end: int
    score: float  # highest score of any detector (threshold units: > 1 anomalous); NaN none
    anomalies: tuple[Anomaly, ...]
    running: bool | None  # None: no run-state tag, or not seen yet


@dataclass
class _Source:
    layout: SourceLayout
    runners: list[Runner]
    run_value: dict[int, float] = field(default_factory=dict)  # machine -> run-state value
    seen: set[int] = field(default_factory=set)  # machines it carried evidence of


class DetectionLayer:
    """The catalog's detectors over the sources this worker reads."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.specs = catalog.detector_specs()
        self.run_state = catalog.alarms.run_state
        self._sources: dict[str, _Source] = {}  # built on a source's first window
        for spec in self.specs:  # a wrong configuration fails now, not on every frame
            if spec.kind != "sad":
                make_detector(spec)
        self.windows = 0  # source windows scored
        self.anomalies = 0

    def _source(self, name: str, tags: Collection[str] = ()) -> _Source:
        """The source's detectors, built on its first window (``tags``: that window's,
        which a source not in the catalog covers)."""
        src = self._sources.get(name)
        if src is None:
            layout = SourceLayout(self.catalog, name, tags)
            claimed: dict[bool, set[str]] = {True: set(), False: set()}
            for s in self.specs:
                if s.tags is not None:
                    claimed[True] |= {self.catalog.resolve(t) for t in s.tags}
                if s.machines is not None:
                    claimed[False] |= set(s.machines)
            runners = [r for s in self.specs
                       if (r := runner_for(s, self.catalog, layout, claimed[s.per_tag]))]
            src = self._sources[name] = _Source(layout, runners)
        return src

    def _running(self, src: _Source) -> tuple[np.ndarray, list[bool | None]]:
        states: list[bool | None] = []
        for m in range(len(src.layout.machines)):
            v = src.run_value.get(m)
            states.append(None if v is None or self.run_state is None
                          else v in self.run_state.running)
        return np.asarray([s is not False for s in states], dtype=bool), states

    def observe(self, frame: AggregateFrame, bad_tags: frozenset[str] = frozenset(),
                now_ms: int = 0) -> list[AssetEvidence]:
        """Score and learn the frame's windows (in start order); the machines' evidence."""
        src = self._source(frame.source, frame.tag)
        out: list[AssetEvidence] = []
        for win in src.layout.windows(frame, bad_tags):
            out.extend(self._window(src, win, now_ms))
        return out

    def _window(self, src: _Source, win: WindowMatrix, now_ms: int) -> list[AssetEvidence]:
        lay = src.layout
        src.run_value.update(win.run_value)
        running, states = self._running(src)
        scored = win.present & running[lay.machine_of]
        score = np.full(len(lay.machines), np.nan)
        hits: list[tuple[Runner, Hit]] = []
        for r in src.runners:
            if isinstance(r, AssetRunner):
                per_machine, found = r.score(win, running)
                for m, s in per_machine.items():
                    score[m] = np.fmax(score[m], s)
            else:
                per_tag, found = r.score(win, scored)
                np.fmax.at(score, lay.machine_of[r.tags], per_tag)
            hits.extend((r, h) for h in found)
        flagged = np.zeros(len(lay.machines), dtype=bool)  # any anomaly of the machine
        tag_flagged = np.zeros(len(lay), dtype=bool)  # a per-tag detector flagged the tag
        anomalies: dict[int, list[Anomaly]] = {}
        for r, h in hits:
            asset = isinstance(r, AssetRunner)
            m = h.subject if asset else int(lay.machine_of[h.subject])
            flagged[m] = True
            if not asset:
                tag_flagged[h.subject] = True
            anomalies.setdefault(m, []).append(self._anomaly(lay, r, h, win, now_ms))
        # a tag's detectors skip its flagged windows; a machine's skip any flagged window of
        # the machine (one anomalous tag makes the whole row unlike normal operation)
        for r in src.runners:
            good = scored & (win.good_share >= r.spec.min_good_share)
            if isinstance(r, AssetRunner):
                r.learn({m for m in r.machines
                         if not flagged[m] and self._machine_good(lay, good, m)})
            else:
                r.learn(good & ~tag_flagged)
        self.windows += 1
        self.anomalies += sum(len(a) for a in anomalies.values())
        seen = np.zeros(len(lay.machines), dtype=bool)
        seen[lay.machine_of[win.present]] = True
        for m in win.run_value:
            seen[m] = True
        src.seen.update(np.flatnonzero(seen).tolist())
        return [AssetEvidence(lay.machines[m], win.window_start, win.window_end,
                              float(score[m]), tuple(anomalies.get(m, ())), states[m])
                for m in np.flatnonzero(seen).tolist()]

    @staticmethod
    def _machine_good(lay: SourceLayout, good: np.ndarray, m: int) -> bool:
        hi = int(lay.starts[m + 1]) if m + 1 < len(lay.starts) else len(lay)
        return bool(good[int(lay.starts[m]):hi].all())

    @staticmethod
    def _anomaly(lay: SourceLayout, r: Runner, h: Hit, win: WindowMatrix,
                 now_ms: int) -> Anomaly:
        asset = isinstance(r, AssetRunner)
        machine = lay.machines[h.subject] if asset else lay.machines[lay.machine_of[h.subject]]
        tag = machine if asset else lay.tags[h.subject]
        return Anomaly(
            anomaly_id=anomaly_id(h.detector, tag, win.window_start, h.feature), tag=tag,
            window_start=win.window_start, window_end=win.window_end, feature=h.feature,
            value=h.value if np.isfinite(h.value) else 0.0, score=h.score,
            threshold=h.threshold, detector=h.detector, detected_at=now_ms,
            scope="asset" if asset else "tag", asset=machine,
            tags=[lay.tags[t] for t in h.tags], drivers=h.drivers,
        )

    # -- operator feedback ---------------------------------------------------------------

    def raise_threshold(self, detector: str, subject: str, times: float) -> bool:
        """A false positive: ``detector`` (its catalog name, or ``name:member``) on
        ``subject`` (a tag, or a machine for a per-machine detector) now needs ``times``
        the score it needed to flag. False if no such detector covers that subject here."""
        label = detector.split(":", 1)[0]
        done = False
        for src in self._sources.values():
            lay = src.layout
            for r in src.runners:
                if r.spec.label != label:
                    continue
                if isinstance(r, AssetRunner):
                    if subject in lay.machines:
                        done |= r.raise_threshold(lay.machines.index(subject), times)
                elif subject in lay.tags:
                    done |= r.raise_threshold(lay.tags.index(subject), times)
        if done:
            logger.info("operator feedback: %s on %s now needs %.3g times the score to flag",
                        label, subject, times)
        return done

    # -- state ---------------------------------------------------------------------------

    def snapshot(self, sources: Collection[str] | None = None, *,
                 arrays: bool = False) -> dict[str, Any]:
        """The state of the given sources (default all) as plain data, with the layout
        version and River's (its models are pickled inside). ``arrays`` keeps the
        per-tag detectors' arrays as the live NumPy arrays (for the checkpoint codec)."""
        return {"version": STATE_VERSION, "river": river.__version__, "sources": {
            name: {"layout": src.layout.snapshot(),
                   "run_value": {str(k): v for k, v in src.run_value.items()},
                   "seen": sorted(src.seen),
                   "runners": {r.spec.label: r.snapshot(arrays) for r in src.runners}}
            for name, src in self._sources.items() if sources is None or name in sources}}

    def restore(self, snap: dict[str, Any], *, replace: bool = True) -> None:
        """Take the sources of a :meth:`snapshot`, instead of all state (``replace``) or
        besides the sources held. Refuses another layout or River release (its pickled
        models might not load, or mean the same)."""
        made_with = str(snap.get("river"))
        if snap.get("version") != STATE_VERSION or (
                made_with.split(".")[:2] != river.__version__.split(".")[:2]):
            raise StateVersionError("detector state", f"layout {snap.get('version')!r} and "
                                    f"River {made_with}", f"layout {STATE_VERSION} and River "
                                    f"{river.__version__}")
        if replace:
            self._sources.clear()
        for name, s in snap["sources"].items():
            self._sources.pop(name, None)
            src = self._source(name, s["layout"]["tags"])
            src.layout.restore(s["layout"])
            src.run_value = {int(k): float(v) for k, v in s["run_value"].items()}
            src.seen = {int(m) for m in s.get("seen", ())}
            for r in src.runners:
                state = s["runners"].get(r.spec.label)
                if state is None:
                    logger.info("no saved state for detector %s of %s: it warms up",
                                r.spec.label, name)
                    continue
                r.restore(state)

    def machines_seen(self, source: str) -> list[str]:
        """The machines ``source`` carried evidence of here (none if it is not held)."""
        src = self._sources.get(source)
        return [] if src is None else [src.layout.machines[m] for m in sorted(src.seen)]

    def drop(self, sources: Collection[str]) -> None:
        """Forget these sources (their partition moved to another worker)."""
        for name in sources:
            self._sources.pop(name, None)
