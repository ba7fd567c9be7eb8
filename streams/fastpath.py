"""The fast path: limit rules checked on every reading as it arrives, not on closed windows.

A limit rule that one reading decides (:attr:`schemas.catalog.RuleSpec.per_reading`) fires
as soon as a reading crosses its bound, instead of after its window closes (window +
lateness, 1.3 s in the demo). Each rule is a small state machine, armed at start:

- a reading beyond the bound, while armed, fires the rule (one command) and disarms it;
- the rule re-arms only once a reading is back inside the bound by ``hysteresis``, so a
  value that hovers around the bound gives one command per excursion, not a storm;
- the cooldown (processing time) holds as on the window path: a breach while cooling is
  counted ``suppressed`` and leaves the rule armed, so a breach that outlasts the
  cooldown still gets its command: at its next reading, or at the next :meth:`tick` if
  the value holds still (a subscription reports changes only).

Only readings that tell the tag's current state count: GOOD or UNCERTAIN with a value,
not late for the windows, and not older than a reading of the same tag already seen
(out of order: counted ``stale``, never fired on). A frame is one NumPy pass over its
tags' rule codes; only readings of rule tags are looked at further, and the state machine
walks the runs of breach/clear readings (a few per frame), never the readings one by one.

Lifecycle: ``FastPath(catalog, specs)``; ``watches(source)`` and ``evaluate(...)`` per
frame; ``tick(now_ms)`` on a timer; ``counters()``; ``snapshot()``/``restore()`` for the
rules' state.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.catalog import Catalog, RuleSpec, TagSpec
from schemas.events import Command
from schemas.readings import Quality
from streams.rules import Rule, command_for, command_id, make_rule

__all__ = ["FastPath", "default_hysteresis"]

logger = logging.getLogger(__name__)

_NO_TS = np.iinfo(np.int64).min


def default_hysteresis(spec: RuleSpec, tag: TagSpec) -> float:
    """The rule's hysteresis, or 2 % of the tag's low..high range, else 1 % of the bound."""
    if spec.hysteresis is not None:
        return spec.hysteresis
    if tag.low is not None and tag.high is not None and tag.high > tag.low:
        return 0.02 * (tag.high - tag.low)
    bound = spec.above if spec.above is not None else spec.below
    return 0.01 * abs(bound or 0.0)


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%H:%M:%S.%f")[:-3]


def _num(x: float) -> str:
    return f"{x:.6g}"


@dataclass
class _Limit:
    """One per-reading limit rule and its state."""

    rule: Rule
    above: float | None
    below: float | None
    hysteresis: float
    armed: bool = True
    last_ts: int = _NO_TS  # newest source ts seen for the tag
    held: tuple[int, float] | None = None  # the newest reading, a breach the cooldown held

    def feed(self, ts: npt.NDArray[np.int64], value: npt.NDArray[np.float64], now_ms: int,
             count: dict[str, int]) -> list[Command]:
        """The tag's usable readings of one frame, in arrival order."""
        newest = np.maximum.accumulate(np.concatenate(([self.last_ts], ts[:-1])))
        fresh = ts >= newest
        self.last_ts = max(self.last_ts, int(ts.max()))
        if not fresh.all():
            count["stale"] += int(len(ts) - np.count_nonzero(fresh))
            ts, value = ts[fresh], value[fresh]
        breach = np.zeros(len(ts), bool)
        clear = np.ones(len(ts), bool)
        if self.above is not None:
            breach |= value > self.above
            clear &= value <= self.above - self.hysteresis
        if self.below is not None:
            breach |= value < self.below
            clear &= value >= self.below + self.hysteresis
        if len(ts):
            self.held = (int(ts[-1]), float(value[-1])) if breach[-1] else None
        events = np.flatnonzero(breach | clear)  # readings inside the band change nothing
        if not len(events):
            return []
        kinds = breach[events]
        runs = np.flatnonzero(np.concatenate(([True], kinds[1:] != kinds[:-1])))
        out: list[Command] = []
        for start in runs.tolist():  # breach and clear runs alternate: a few per frame
            if not kinds[start]:
                self.armed = True
                continue
            if not self.armed:
                continue
            if self.rule.cooling(now_ms):
                count["suppressed"] += 1  # stays armed: fires once the cooldown is over
                continue
            i = int(events[start])
            out.append(self._fire(int(ts[i]), float(value[i]), now_ms, count))
        return out

    def reset(self) -> None:
        """Armed, with nothing seen or held, as at start."""
        self.armed, self.last_ts, self.held = True, _NO_TS, None
        self.rule.last_fired_ms = None

    def tick(self, now_ms: int, count: dict[str, int]) -> Command | None:
        """Fire for a breach the cooldown held, if the tag still reads it."""
        if self.held is None or not self.armed or self.rule.cooling(now_ms):
            return None
        return self._fire(*self.held, now_ms, count)

    def _fire(self, ts: int, x: float, now_ms: int, count: dict[str, int]) -> Command:
        self.armed = False
        self.held = None
        count["fired"] += 1
        cid = command_id(self.rule.spec.name, self.rule.tag, ts)  # the same on a replay
        return command_for(self.rule, self._reason(ts, x), now_ms, cid)

    def _reason(self, ts: int, x: float) -> str:
        r = self.rule
        unit = f" {r.unit}" if r.unit else ""
        if self.above is not None and x > self.above:
            bound, op, rearm = self.above, ">", f"below {_num(self.above - self.hysteresis)}"
        else:
            assert self.below is not None
            bound, op, rearm = self.below, "<", f"above {_num(self.below + self.hysteresis)}"
        return (f"{r.tag_name} {_num(x)}{unit} {op} {_num(bound)} at {_stamp(ts)} "
                f"(re-arms {rearm})")


class FastPath:
    """The per-reading limit rules of a catalog (``specs``), evaluated frame by frame."""

    def __init__(self, catalog: Catalog, specs: Sequence[RuleSpec]) -> None:
        self._limits: list[list[_Limit]] = []  # by tag code
        self._code: dict[str, int] = {}  # rule tag path -> code
        sources: set[str] = set()
        for spec in specs:
            info = catalog.info(spec.tag)
            limit = _Limit(make_rule(catalog, spec), spec.above, spec.below,
                           default_hysteresis(spec, info.spec))
            code = self._code.setdefault(info.path, len(self._code))
            if code == len(self._limits):
                self._limits.append([])
            self._limits[code].append(limit)
            sources.add(info.source.name)
        self.sources = frozenset(sources)
        self.count: dict[str, int] = {"fired": 0, "suppressed": 0, "stale": 0}

    def __bool__(self) -> bool:
        return bool(self._code)

    def watches(self, source: str) -> bool:
        """Whether frames of ``source`` can hold readings of a fast-path tag."""
        return source in self.sources

    def evaluate(self, tags: Sequence[str], ts: npt.NDArray[np.int64],
                 value: npt.NDArray[np.float64], quality: npt.NDArray[np.int8],
                 skip: npt.NDArray[np.bool_] | None, now_ms: int) -> list[Command]:
        """The commands one frame's readings fire; ``skip`` marks readings not to use
        (late for the windows)."""
        codes = np.fromiter(map(self._code.get, tags, repeat(-1)), np.int64, len(tags))
        use = (codes >= 0) & (quality != Quality.BAD) & np.isfinite(value)
        if skip is not None:
            use &= ~skip
        idx = np.flatnonzero(use)
        if not len(idx):
            return []
        out: list[Command] = []
        present = codes[idx]
        for code in np.unique(present).tolist():  # the rule tags in this frame: a few
            mine = idx[present == code]
            for limit in self._limits[code]:
                out += limit.feed(ts[mine], value[mine], now_ms, self.count)
        return out

    def _of(self, tags: Container[str] | None) -> list[_Limit]:
        """The limits of ``tags`` (or all)."""
        return [lim for limits in self._limits for lim in limits
                if tags is None or lim.rule.tag in tags]

    def tick(self, now_ms: int, tags: Container[str] | None = None) -> list[Command]:
        """Commands for breaches that outlasted their rule's cooldown without a new
        reading (processing-time timer), of the rules of ``tags`` (or all)."""
        out = [lim.tick(now_ms, self.count) for lim in self._of(tags)]
        return [c for c in out if c is not None]

    def counters(self) -> dict[str, int]:
        return dict(self.count)

    def snapshot(self, tags: Container[str] | None = None) -> dict[str, Any]:
        """The state of the rules of ``tags`` (or all) as plain data, by rule name."""
        return {lim.rule.spec.name: {"armed": lim.armed, "last_ts": lim.last_ts,
                                     "last_fired_ms": lim.rule.last_fired_ms,
                                     "held": None if lim.held is None else list(lim.held)}
                for lim in self._of(tags)}

    def restore(self, snap: dict[str, Any], *, replace: bool = True) -> None:
        """Rules the snapshot names get their state back; with ``replace`` the others
        start armed, afresh."""
        for lim in self._of(None):
            state = snap.get(lim.rule.spec.name)
            if state is None:
                if replace:
                    lim.reset()
                continue
            lim.armed = bool(state["armed"])
            lim.last_ts = int(state["last_ts"])
            fired = state["last_fired_ms"]
            lim.rule.last_fired_ms = None if fired is None else int(fired)
            held = state.get("held")
            lim.held = None if held is None else (int(held[0]), float(held[1]))

    def drop(self, tags: Container[str]) -> None:
        """Forget the state of the rules of ``tags`` (their partition moved away)."""
        for lim in self._of(tags):
            lim.reset()
