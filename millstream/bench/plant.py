"""A plant of any size for ``bench streams``: the shipped catalog's machines, repeated.

:func:`scaled_catalog` keeps the base catalog's windows, detector and rules, and fills
``tags`` tags with copies of its machines (same tag kinds, units and ranges), spread over
OPC-UA sources of ``tags_per_source`` tags each, as connectors would read them. The first
copy of each machine keeps its name, so the base catalog's rules still apply.
:func:`plant_frames` samples every tag every ``step_ms`` and encodes the readings in the
connectors' frame format (:class:`schemas.readings.ReadingFrame`, numbered per source
without gaps as :class:`~schemas.readings.FrameBuilder` numbers them), vectorised: two
million readings are a few seconds of work, not a minute of per-reading objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from schemas.catalog import Catalog, MachineSpec, SourceSpec
from schemas.readings import ReadingFrame

__all__ = ["EPOCH_MS", "PlantFrame", "plant_frames", "scaled_catalog"]

EPOCH_MS = 1_763_760_000_000  # source timestamps start here (2025-11-21T21:20:00Z)
_ADDRESSING = {"node": None, "browse_path": None, "modbus": None}


def scaled_catalog(base: Catalog, tags: int, tags_per_source: int = 1000) -> Catalog:
    """``base`` with ``tags`` tags: its machines repeated, on sources of ``tags_per_source``."""
    if tags < 1 or tags_per_source < 1:
        raise ValueError(f"need at least one tag and one tag per source, got tags={tags}, "
                         f"tags_per_source={tags_per_source}")
    templates = [m for m in base.machines if m.tags]
    if not templates:
        raise ValueError("the base catalog has no machine with tags to repeat")
    n_sources = math.ceil(tags / tags_per_source)
    sources = [SourceSpec(name=f"bench-{i:03d}", protocol="opcua",
                          endpoint=f"opc.tcp://127.0.0.1:4840/bench-{i:03d}/", interval_ms=100)
               for i in range(n_sources)]
    machines: list[MachineSpec] = []
    made = copy = 0
    while made < tags:
        for t in templates:
            if made >= tags:
                break
            name = t.name if copy == 0 else f"{t.name}-x{copy:05d}"
            # a machine is on one source: cut it where the source is full
            room = (made // tags_per_source + 1) * tags_per_source - made
            keep = t.tags[:min(tags - made, room)]
            source = sources[made // tags_per_source].name
            tag_specs = [s.model_copy(update={**_ADDRESSING, "node": f"ns=2;s={name}.{s.name}",
                                              "handshake": None}) for s in keep]
            machines.append(MachineSpec(name=name, area=t.area, line=t.line, source=source,
                                        tags=tag_specs))
            made += len(keep)
        copy += 1
    have = {f"{m.name}/{t.name}" for m in machines for t in m.tags}
    rules = [r for r in base.rules if r.tag in have and r.action.setpoint in have]
    return Catalog(enterprise=base.enterprise, site=base.site, sources=sources,
                   machines=machines, streams=base.streams, detector=base.detector,
                   rules=rules)


@dataclass(frozen=True, slots=True)
class PlantFrame:
    """One encoded frame, with what a benchmark needs to know without decoding it."""

    key: bytes  # the source: a source's frames stay in order on one partition
    value: bytes
    readings: int
    last_ts: int


@dataclass(frozen=True, slots=True)
class _Source:
    name: str
    tags: list[str]
    kind: npt.NDArray[np.int8]  # 0 analog, 1 counter, 2 state running, 3 state other, 4 sp
    low: npt.NDArray[np.float64]
    span: npt.NDArray[np.float64]
    default: npt.NDArray[np.float64]
    phase: npt.NDArray[np.float64]


def _sources(catalog: Catalog, seed: int) -> list[_Source]:
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[tuple[str, int, float, float, float]]] = {}
    for path, info in catalog.tags().items():
        s = info.spec
        low = s.low if s.low is not None else (s.min if s.min is not None else 0.0)
        high = s.high if s.high is not None else (s.max if s.max is not None else 100.0)
        default = s.default if s.default is not None else (low + high) / 2
        kind = {"analog": 0, "counter": 1, "setpoint": 4}.get(
            s.kind, 2 if path.endswith("/running") else 3)
        by_source.setdefault(info.source.name, []).append(
            (path, kind, low, high - low, default))
    out = []
    for name, rows in by_source.items():
        out.append(_Source(
            name, [r[0] for r in rows], np.array([r[1] for r in rows], np.int8),
            np.array([r[2] for r in rows]), np.array([r[3] for r in rows]),
            np.array([r[4] for r in rows]), rng.uniform(0, 2 * math.pi, len(rows))))
    return out


def plant_frames(catalog: Catalog, readings: int, *, frame_size: int = 1000,
                 step_ms: int = 100, seed: int = 7, t0_ms: int = EPOCH_MS,
                 epoch: int = EPOCH_MS) -> Iterator[PlantFrame]:
    """``readings`` readings: every tag once per ``step_ms`` tick, all sources each tick.

    Each source's readings of a tick, in catalog order, fill frames of ``frame_size`` (a
    source's last frame of a tick may be shorter: connectors send per interval). Analog
    tags wander sinusoidally around mid-range with 2% noise; counters count up; state
    tags say running and no fault; setpoints sit at their default.
    """
    if readings < 1:
        raise ValueError(f"the workload needs at least one reading, got {readings}")
    sources = _sources(catalog, seed)
    rng = np.random.default_rng(seed + 1)
    seq = dict.fromkeys((s.name for s in sources), 1)
    made = tick = 0
    while made < readings:
        ts = t0_ms + tick * step_ms
        for s in sources:
            n = min(len(s.tags), readings - made)
            if n <= 0:
                break
            values = _values(s, tick, rng)[:n].tolist()
            for lo in range(0, n, frame_size):
                hi = min(lo + frame_size, n)
                frame = ReadingFrame(s.name, epoch, seq[s.name], s.tags[lo:hi],
                                     [ts] * (hi - lo), values[lo:hi], [0] * (hi - lo))
                seq[s.name] += hi - lo
                yield PlantFrame(frame.key(), frame.encode(), hi - lo, ts)
            made += n
        tick += 1


def _values(s: _Source, tick: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    wave = 0.25 * np.sin(2 * math.pi * tick / 600.0 + s.phase) + rng.normal(0, 0.02,
                                                                            len(s.tags))
    analog = np.round(s.low + s.span * (0.5 + wave), 3)
    return np.select(
        [s.kind == 0, s.kind == 1, s.kind == 2, s.kind == 3],
        [analog, np.full(len(s.tags), float(tick // 10)), np.ones(len(s.tags)),
         np.zeros(len(s.tags))], s.default)
