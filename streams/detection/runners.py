"""One catalog detector over one source: per tag (vectorised) or per machine.

Each runner scores a window first (``score``) and learns after (``learn``), so that the
layer can decide across all detectors what counts as flagged: a machine's window that any
detector flagged is learned by none. Scores leave a runner in threshold units (``> 1``
anomalous), already divided by the operator feedback factor of their column or machine
(``raise_threshold``), so a false positive's pattern stays below 1 afterwards.

- :class:`TagRunner`: ``bank`` (:class:`TagBank`) or ``knn`` (:class:`KnnDetector`) on
  the columns ``tag:feature`` of its tags, one array operation per window for all of them.
- :class:`AssetRunner`: ``pca`` or ``hst``, one detector per machine on the features of
  all its analog tags.
- :class:`SadRunner`: the foundation's river SAD per (tag, feature), per tag.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.catalog import Catalog, DetectorSpec
from schemas.events import Aggregate
from schemas.exceptions import CatalogError
from streams.detect import WindowDetector
from streams.detection.layout import FEATURES, SourceLayout, WindowMatrix
from streams.detectors import HSTDetector, KnnDetector, PCADetector, TagBank
from streams.detectors.base import B8, F64, Detector

__all__ = ["AssetRunner", "Hit", "SadRunner", "TagRunner", "make_detector", "runner_for"]

logger = logging.getLogger(__name__)

_CLASSES: dict[str, type[Detector]] = {"bank": TagBank, "knn": KnnDetector,
                                       "pca": PCADetector, "hst": HSTDetector}


@dataclass(frozen=True, slots=True)
class Hit:
    """One anomalous tag (or machine) of one window, before it becomes an Anomaly."""

    subject: int  # tag index (per-tag runners) or machine index (AssetRunner)
    detector: str  # e.g. "bank:level_shift"
    feature: str
    value: float
    score: float  # raw, threshold units
    threshold: float  # the feedback factor (1.0 unless an operator raised it)
    drivers: list[tuple[str, float]]  # ranked
    tags: list[int]  # tag indices that drove it, ranked


def make_detector(spec: DetectorSpec) -> Detector:
    """The detector of ``spec`` with ``params`` as its constructor arguments."""
    cls = _CLASSES[spec.kind]
    params = dict(spec.params)
    if spec.kind == "bank":
        params.setdefault("rebaseline", spec.rebaseline_windows)
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise CatalogError(f"detector {spec.label!r} ({spec.kind}): params {params} do not "
                           f"configure a {cls.__name__} ({exc}); its parameters: "
                           f"{', '.join(known)}") from exc


class TagRunner:
    """A bank or knn detector over the columns ``tag:feature`` of the runner's tags."""

    def __init__(self, spec: DetectorSpec, layout: SourceLayout, tags: list[int]) -> None:
        self.spec = spec
        self.tags = np.asarray(tags, dtype=np.int64)
        self.feat = np.asarray([FEATURES.index(f) for f in spec.features], dtype=np.int64)
        self.det = make_detector(spec)
        self.det.add_columns([f"{layout.tags[t]}:{f}"  # type: ignore[attr-defined]
                              for t in tags for f in spec.features])
        n = len(tags) * len(spec.features)
        self.scale = np.ones(n)  # operator feedback: the score that counts as 1
        self.run = np.zeros(n, dtype=np.int64)  # flagged windows in a row (knn)
        self._x = np.full(n, np.nan)
        self._flagged = np.zeros(n, dtype=bool)

    def score(self, win: WindowMatrix, scored: B8) -> tuple[F64, list[Hit]]:
        """Per covered tag its score (NaN: none), and the anomalous tags' hits."""
        nf = len(self.feat)
        x = win.values[self.tags][:, self.feat].reshape(-1)
        x = np.where(np.repeat(scored[self.tags], nf), x, np.nan)
        members = None
        if isinstance(self.det, TagBank):
            res = self.det.score(x)
            raw, members = res.score, res.members
        else:
            raw = self.det.score_many(x)  # type: ignore[attr-defined]
        with np.errstate(invalid="ignore"):
            norm = (raw / self.scale).reshape(-1, nf)
        valid = np.isfinite(norm)
        per_tag = np.where(valid.any(axis=1), np.max(np.where(valid, norm, -np.inf), axis=1),
                           np.nan)
        hits = []
        for i in np.flatnonzero(per_tag > 1.0).tolist():
            f = int(np.nanargmax(norm[i]))
            col = i * nf + f
            hits.append(Hit(int(self.tags[i]), self._name(members, col),
                            self.spec.features[f], float(x[col]), float(raw[col]),
                            float(self.scale[col]), self._drivers(members, norm, i),
                            [int(self.tags[i])]))
        self._x = x
        self._flagged = np.repeat(per_tag > 1.0, nf)
        return per_tag, hits

    def _name(self, members: F64 | None, col: int) -> str:
        """The bank member that explains the column: the highest-scoring one, except that a
        spike is named only when nothing else fired (a shifted level also scores as a
        spike on every window until it is learned)."""
        if members is None or not isinstance(self.det, TagBank):
            return self.spec.label
        s = np.where(np.isfinite(members[:, col]), members[:, col], -np.inf)
        names = self.det.detectors
        if "spike" in names and (np.delete(s, names.index("spike")) > self.scale[col]).any():
            s[names.index("spike")] = -np.inf
        return f"{self.spec.label}:{names[int(np.argmax(s))]}"

    def _drivers(self, members: F64 | None, norm: F64, i: int) -> list[tuple[str, float]]:
        nf = len(self.feat)
        out: list[tuple[str, float]] = []
        for f in range(nf):
            col = i * nf + f
            if members is None or not isinstance(self.det, TagBank):
                if np.isfinite(norm[i, f]):
                    out.append((self.spec.features[f], float(norm[i, f])))
                continue
            for k, name in enumerate(self.det.detectors):
                s = members[k, col] / self.scale[col]
                if np.isfinite(s):
                    out.append((f"{self.spec.features[f]}:{name}", float(s)))
        return sorted(out, key=lambda p: -p[1])[:6]

    def learn(self, fit_tags: B8) -> None:
        """Learn the window just scored: fit the covered tags in ``fit_tags``."""
        fit = np.repeat(fit_tags[self.tags], len(self.feat))
        if isinstance(self.det, TagBank):
            self.det.learn(self._x, self._flagged, fit)
            return
        self.det.learn_many(self._x, fit & ~self._flagged)  # type: ignore[attr-defined]
        present = np.isfinite(self._x)
        self.run = np.where(self._flagged, self.run + 1, np.where(present, 0, self.run))
        moved = self.run >= self.spec.rebaseline_windows
        if moved.any():
            self.det.reset(moved)  # type: ignore[attr-defined]
            self.run[moved] = 0

    def raise_threshold(self, tag: int, times: float) -> bool:
        hit = np.flatnonzero(self.tags == tag)
        if not len(hit):
            return False
        nf = len(self.feat)
        self.scale[int(hit[0]) * nf:int(hit[0]) * nf + nf] *= times
        return True

    def snapshot(self, arrays: bool = False) -> dict[str, Any]:
        return {"det": self.det.state(arrays), "scale": self.scale.tolist(),
                "run": self.run.tolist()}

    def restore(self, snap: dict[str, Any]) -> None:
        det = type(self.det).from_state(snap["det"])
        if det.columns != self.det.columns:  # type: ignore[attr-defined]
            logger.warning("detector %s: the saved state is of other tags (the catalog "
                           "changed): it warms up again", self.spec.label)
            return
        self.det = det
        self.scale = np.asarray(snap["scale"], dtype=np.float64)
        self.run = np.asarray(snap["run"], dtype=np.int64)


class AssetRunner:
    """A pca or hst detector per machine, on the features of all its analog tags."""

    def __init__(self, spec: DetectorSpec, layout: SourceLayout, machines: list[int]) -> None:
        self.spec = spec
        self.layout = layout
        self.machines = machines
        self.dets = {m: make_detector(spec) for m in machines}
        self.scale = dict.fromkeys(machines, 1.0)
        self.run = dict.fromkeys(machines, 0)
        self.feat = [FEATURES.index(f) for f in spec.features]
        self._rows: dict[int, dict[str, float]] = {}
        self._flagged: set[int] = set()

    def _row(self, win: WindowMatrix, m: int) -> dict[str, float]:
        lo = int(self.layout.starts[m])
        hi = int(self.layout.starts[m + 1]) if m + 1 < len(self.layout.starts) else len(
            self.layout)
        block = win.values[lo:hi][:, self.feat]
        return {f"{self.layout.names[lo + i]}:{f}": float(block[i, j])
                for i in range(hi - lo) for j, f in enumerate(self.spec.features)}

    def score(self, win: WindowMatrix, running: B8) -> tuple[dict[int, float], list[Hit]]:
        """Per running machine its score (NaN: none, e.g. a tag without a value), and the
        anomalous machines' hits."""
        out: dict[int, float] = {}
        hits = []
        self._rows, self._flagged = {}, set()
        for m in self.machines:
            if not running[m]:
                continue
            x = self._row(win, m)
            self._rows[m] = x
            raw = self.dets[m].score_one(x)
            norm = raw / self.scale[m]
            out[m] = norm
            if norm > 1.0:
                self._flagged.add(m)
                drivers = self.dets[m].explain(x)[:6]
                top = drivers[0][0] if drivers else next(iter(x))
                lo = int(self.layout.starts[m])
                tags: list[int] = []
                for name, _ in drivers:
                    t = lo + self.layout.names[lo:].index(name.split(":")[0])
                    if t not in tags:
                        tags.append(t)
                hits.append(Hit(m, self.spec.label, top, x.get(top, float("nan")), raw,
                                self.scale[m], drivers, tags))
        return out, hits

    def learn(self, fit_machines: set[int]) -> None:
        for m, x in self._rows.items():
            if m in self._flagged:
                self.run[m] += 1
                if self.run[m] >= self.spec.rebaseline_windows:
                    logger.info("%s on %s anomalous for %d windows in a row: re-baselining",
                                self.spec.label, self.layout.machines[m], self.run[m])
                    self.dets[m] = make_detector(self.spec)
                    self.run[m] = 0
                continue
            self.run[m] = 0
            if m in fit_machines:
                self.dets[m].learn_one(x)

    def raise_threshold(self, machine: int, times: float) -> bool:
        if machine not in self.scale:
            return False
        self.scale[machine] *= times
        return True

    def snapshot(self, arrays: bool = False) -> dict[str, Any]:
        return {"dets": {str(m): d.state() for m, d in self.dets.items()},
                "scale": {str(m): s for m, s in self.scale.items()},
                "run": {str(m): r for m, r in self.run.items()}}

    def restore(self, snap: dict[str, Any]) -> None:
        cls = _CLASSES[self.spec.kind]
        for m in self.machines:
            if str(m) in snap["dets"]:
                self.dets[m] = cls.from_state(snap["dets"][str(m)])
                self.scale[m] = float(snap["scale"][str(m)])
                self.run[m] = int(snap["run"][str(m)])


class SadRunner:
    """The foundation's river SAD per (tag, feature): not vectorised, not held."""

    def __init__(self, spec: DetectorSpec, layout: SourceLayout, tags: list[int]) -> None:
        self.spec = spec
        self.layout = layout
        self.tags = tags
        self.det = WindowDetector(spec.threshold, spec.warmup_windows, spec.features,
                                  [layout.tags[t] for t in tags],
                                  rebaseline_windows=spec.rebaseline_windows)
        self.scale = np.ones(len(layout))

    def score(self, win: WindowMatrix, scored: B8) -> tuple[F64, list[Hit]]:
        per_tag = np.full(len(self.tags), np.nan)
        hits = []
        for k, t in enumerate(self.tags):
            if not (scored[t] and win.present[t] and not win.held[t]):
                continue
            v = {f: float(win.values[t, i]) for i, f in enumerate(FEATURES)}
            agg = Aggregate(self.layout.tags[t], win.window_start, win.window_end, 1,
                            v["min"], v["max"], v["mean"], v["std"], v["first"], v["last"])
            found = self.det.observe(agg, 0)
            per_tag[k] = max((a.score / a.threshold / self.scale[t] for a in found),
                             default=0.0)
            worst = max(found, key=lambda a: a.score, default=None)
            if worst is not None and per_tag[k] > 1.0:
                hits.append(Hit(t, self.spec.label, worst.feature, worst.value, worst.score,
                                worst.threshold * self.scale[t],
                                [(a.feature, a.score / a.threshold) for a in found], [t]))
        return per_tag, hits

    def learn(self, fit_tags: B8) -> None:
        """The SAD learns inside ``observe`` (its own gating)."""

    def raise_threshold(self, tag: int, times: float) -> bool:
        if tag not in self.tags:
            return False
        self.scale[tag] *= times
        return True

    def snapshot(self, arrays: bool = False) -> dict[str, Any]:
        return {"scale": self.scale.tolist(), "det": self.det.snapshot()}

    def restore(self, snap: dict[str, Any]) -> None:
        self.scale = np.asarray(snap["scale"], dtype=np.float64)
        self.det.restore(snap["det"])


Runner = TagRunner | AssetRunner | SadRunner


def runner_for(spec: DetectorSpec, catalog: Catalog, layout: SourceLayout,
               claimed: set[str]) -> Runner | None:
    """The runner of ``spec`` over ``layout``'s tags or machines (None if it covers none).
    ``claimed``: tags/machines that a spec of the same scope lists by name."""
    if spec.per_tag:
        if spec.tags is not None:
            named = {catalog.resolve(t) for t in spec.tags}
            tags = [i for i, t in enumerate(layout.tags) if t in named]
        else:
            tags = [i for i, t in enumerate(layout.tags) if t not in claimed]
        if not tags:
            return None
        return (SadRunner if spec.kind == "sad" else TagRunner)(spec, layout, tags)
    if spec.machines is not None:
        machines = [i for i, m in enumerate(layout.machine_names) if m in spec.machines]
    else:
        machines = [i for i, m in enumerate(layout.machine_names) if m not in claimed]
    return AssetRunner(spec, layout, machines) if machines else None
