"""The catalog's stream-processing sections: the windows and event time of ``streams:``, and
the ``rules:`` that turn limits and anomalies into control actions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.catalog_base import FrozenSpec

__all__ = ["ActionSpec", "RuleSpec", "StreamsSpec", "WindowSpec"]


class WindowSpec(FrozenSpec):
    """One window size: tumbling (``hop_ms`` unset) or hopping, a new window every hop."""

    size_ms: int = Field(ge=100)
    hop_ms: int | None = Field(default=None, ge=100)

    @model_validator(mode="after")
    def _hop_divides(self) -> WindowSpec:
        if self.hop_ms is not None and (self.hop_ms > self.size_ms
                                        or self.size_ms % self.hop_ms):
            raise ValueError(f"window size_ms={self.size_ms} must be a multiple of "
                             f"hop_ms={self.hop_ms}; pick a hop that divides the size")
        return self

    @property
    def pane_ms(self) -> int:
        """The slice windows are built from: the hop, or the whole window when tumbling."""
        return self.hop_ms or self.size_ms


class StreamsSpec(FrozenSpec):
    """Event time and windows. ``windows`` lists every size computed at once; without it,
    ``window_ms`` is the one tumbling window (with it, ``window_ms`` is not used). The
    first window is the one the detector and the rules read."""

    window_ms: int = Field(default=1000, ge=100)  # shorthand: one tumbling window
    windows: list[WindowSpec] | None = Field(default=None, min_length=1)
    # how long after a window's end (in source time) it stays open for late readings
    lateness_ms: int = Field(default=1000, ge=0)
    # a source silent this long (processing time) has its windows closed; default:
    # the first window's size plus the lateness
    idle_ms: int | None = Field(default=None, ge=0)
    # readings stamped further ahead of the worker's clock go to the dead-letter topic
    future_ms: int = Field(default=300_000, ge=0)
    # sequence numbers this far below the highest seen are still checked one by one
    dedup_tolerance: int = Field(default=100_000, ge=0)
    aggregate_frame_rows: int = Field(default=2000, ge=1)  # rows per aggregates message
    twin_max_hz: float = Field(default=2.0, gt=0)  # twin updates per machine and second

    @model_validator(mode="after")
    def _distinct(self) -> StreamsSpec:
        specs = self.window_specs()
        sizes = [w.size_ms for w in specs]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"streams.windows lists a size twice ({sizes}): an aggregate "
                             "is identified by its tag, start and size")
        return self

    def window_specs(self) -> list[WindowSpec]:
        return list(self.windows) if self.windows else [WindowSpec(size_ms=self.window_ms)]

    @property
    def idle_timeout_ms(self) -> int:
        if self.idle_ms is not None:
            return self.idle_ms
        return self.window_specs()[0].size_ms + self.lateness_ms


class ActionSpec(FrozenSpec):
    setpoint: str  # machine/tag of a writable setpoint
    value: float


class RuleSpec(FrozenSpec):
    """``limit``: a value beyond a bound; ``sustained_anomaly``: N anomalous windows in a
    row for the tag (``on: anomalies``), or an alarm episode raised on the tag's machine
    with the tag among its tags (``on: alarms``). Either issues ``action``, at most once
    per cooldown.

    A limit that one reading decides (``value``, ``max`` above, ``min`` below) is checked
    on every reading as it arrives (:attr:`per_reading`, the fast path); it fires once
    per excursion and re-arms when the value is back ``hysteresis`` inside the bound
    (default: 2 % of the tag's low..high range, else 1 % of the bound). Any other limit
    (``mean``, ``max`` below, ``min`` above) is checked on each closed window."""

    name: str = Field(pattern=r"^[a-z0-9-]+$")
    kind: Literal["limit", "sustained_anomaly"]
    tag: str  # machine/tag
    statistic: Literal["value", "max", "min", "mean"] = "max"
    above: float | None = None
    below: float | None = None
    hysteresis: float | None = Field(default=None, ge=0)  # per-reading limits only
    windows: int = Field(default=3, ge=1)
    on: Literal["anomalies", "alarms"] = "anomalies"  # sustained_anomaly: what it reads
    cooldown_s: float = Field(default=30.0, ge=0)
    action: ActionSpec

    @model_validator(mode="after")
    def _bounds(self) -> RuleSpec:
        if self.kind == "limit" and self.above is None and self.below is None:
            raise ValueError(f"limit rule {self.name!r} needs 'above' or 'below'")
        if (self.kind == "limit" and self.above is not None and self.below is not None
                and self.below >= self.above):
            raise ValueError(f"limit rule {self.name!r}: below ({self.below:g}) must be "
                             f"less than above ({self.above:g})")
        return self

    @property
    def per_reading(self) -> bool:
        """True when a single reading decides the rule, so it need not wait for a window:
        a window's max exceeds a bound exactly when one of its readings does."""
        if self.kind != "limit":
            return False
        return (self.statistic == "value" or (self.statistic == "max" and self.below is None)
                or (self.statistic == "min" and self.above is None))
