"""The catalog's detection and alarm settings: which detectors run where, and how their
anomalies become alarm episodes.

A :class:`DetectorSpec` names a detector ``kind`` and where it runs: per tag (``sad``,
``bank``, ``knn``: on each tag's window features) or per machine (``pca``, ``hst``: on the
features of all of the machine's analog tags together). ``params`` are the detector
class's constructor arguments, its configuration (river's convention). A spec that lists
``tags`` (or ``machines``) takes them over from the specs of the same scope that list
none, so one tag can get its own settings. :class:`AlarmSpec` sets delay-on, delay-off,
hysteresis, severity and the run-state tag that suppresses a stopped machine's alarms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from schemas.catalog_base import FrozenSpec

if TYPE_CHECKING:
    from schemas.catalog import Catalog

__all__ = ["ASSET_KINDS", "TAG_KINDS", "AlarmSpec", "DetectorSpec", "RunStateSpec",
           "check_detectors"]

TAG_KINDS = frozenset({"sad", "bank", "knn"})
ASSET_KINDS = frozenset({"pca", "hst"})
Feature = Literal["mean", "std", "max", "min", "first", "last"]


class DetectorSpec(FrozenSpec):
    """One detector: its kind, its name, where it runs and its configuration."""

    # sad: river's StandardAbsoluteDeviation per (tag, feature), the foundation's detector;
    # bank: level shift, CUSUM, spike, variance and stuck, vectorised across tags;
    # knn: repeating shapes per tag; pca: Hotelling T² and SPE per machine;
    # hst: river's HalfSpaceTrees per machine
    kind: Literal["sad", "bank", "knn", "pca", "hst"] = "sad"
    name: str | None = Field(default=None, pattern=r"^[a-z0-9_-]+$")  # default: kind
    features: list[Feature] = ["mean", "std"]
    params: dict[str, Any] = {}  # the detector's constructor arguments
    tags: list[str] | None = None  # machine/tag (per-tag kinds); None: every analog tag
    machines: list[str] | None = None  # machine names (per-machine kinds); None: all
    # after this many anomalous windows in a row the tag (or machine) has a new operating
    # point (a new setpoint, another product): its models warm up again on the new level
    rebaseline_windows: int = Field(default=30, ge=1)
    # windows with a smaller share of GOOD readings are scored but never learned
    min_good_share: float = Field(default=1.0, ge=0.0, le=1.0)
    # sad only (its configuration before params existed)
    threshold: float = Field(default=6.0, gt=0)
    warmup_windows: int = Field(default=10, ge=1)

    @property
    def label(self) -> str:
        return self.name or self.kind

    @property
    def per_tag(self) -> bool:
        return self.kind in TAG_KINDS

    @model_validator(mode="after")
    def _scope(self) -> DetectorSpec:
        if self.per_tag and self.machines is not None:
            raise ValueError(f"detector {self.label!r} ({self.kind}) runs per tag: list "
                             "'tags' (machine/tag), not 'machines'")
        if not self.per_tag and self.tags is not None:
            raise ValueError(f"detector {self.label!r} ({self.kind}) runs per machine: list "
                             "'machines', not 'tags'")
        if self.kind == "sad" and self.params:
            raise ValueError(f"detector {self.label!r} (sad) takes threshold, "
                             "warmup_windows and features, not params")
        return self


class RunStateSpec(FrozenSpec):
    """The tag (by name, in each machine) that says whether the machine runs; a machine
    without it is never suppressed."""

    tag: str = Field(default="running", pattern=r"^[a-z0-9_]+$")
    # values that mean "running"; any other (stopped, maintenance) suppresses its alarms
    running: list[float] = Field(default=[1.0], min_length=1)


class AlarmSpec(FrozenSpec):
    """From anomalies to alarm episodes per machine (ISA-18.2 states)."""

    # delay-on: an episode opens when this many of the last ``within_windows`` windows of
    # the machine scored above on_score (threshold units: 1 is a detector's own threshold;
    # an alarm asks for clearer evidence than an anomaly record)
    on_windows: int = Field(default=3, ge=1)
    within_windows: int = Field(default=5, ge=1)
    on_score: float = Field(default=1.5, ge=1.0)
    # delay-off: it clears after this many windows in a row scoring below clear_score
    off_windows: int = Field(default=10, ge=1)
    # hysteresis: a window counts toward clearing only when its highest score (in threshold
    # units: > 1 is anomalous) is below this
    clear_score: float = Field(default=0.8, gt=0.0, le=1.0)
    # severity from the episode's peak score (threshold units)
    medium_score: float = Field(default=2.0, gt=1.0)
    high_score: float = Field(default=5.0, gt=1.0)
    critical_score: float = Field(default=20.0, gt=1.0)
    run_state: RunStateSpec | None = RunStateSpec()
    shelve_max_s: float = Field(default=8 * 3600.0, gt=0)  # the longest shelving
    # a false positive raises the thresholds of the detectors and tags that drove it to
    # this many times the highest score they reached in the episode
    feedback_margin: float = Field(default=1.25, gt=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> AlarmSpec:
        if self.within_windows < self.on_windows:
            raise ValueError(f"alarms: within_windows ({self.within_windows}) must be at "
                             f"least on_windows ({self.on_windows})")
        if not self.medium_score <= self.high_score <= self.critical_score:
            raise ValueError("alarms: medium_score <= high_score <= critical_score")
        return self


def check_detectors(catalog: Catalog) -> None:
    """Detector names are unique; the tags and machines they list exist."""
    specs = catalog.detector_specs()
    names = [s.label for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"detector names must be unique (have {names}); give each a 'name'")
    machines = {m.name for m in catalog.machines}
    for s in specs:
        for t in s.tags or ():
            if catalog.info(t).spec.kind != "analog":
                raise ValueError(f"detector {s.label!r}: {t} is not an analog tag")
        unknown = sorted(set(s.machines or ()) - machines)
        if unknown:
            raise ValueError(f"detector {s.label!r} names unknown machine(s) {unknown} "
                             f"(machines: {', '.join(sorted(machines))})")

