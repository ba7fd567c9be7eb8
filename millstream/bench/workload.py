"""The wire benchmark's workload: plant readings, encoded both ways the benchmark compares.

The readings follow the plant catalog (its ISA-95 tag paths, ranges and sources): every
tag is sampled on one 100 ms clock, so the tumbling windows downstream close as they would
in the plant. Format (a) is one JSON object per Kafka message (the obvious design);
format (b) is millstream's columnar frames (:class:`schemas.readings.ReadingFrame`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from schemas.catalog import Catalog
from schemas.exceptions import ContractError
from schemas.readings import FrameBuilder, Quality, Reading

__all__ = [
    "EPOCH_MS",
    "Message",
    "TagModel",
    "decode_reading",
    "encode_reading",
    "frame_messages",
    "generate_readings",
    "iter_readings",
    "per_reading_messages",
    "tag_models",
]

EPOCH_MS = 1_763_760_000_000  # source timestamps start here (2025-11-21T21:20:00Z)
Message = tuple[bytes, bytes]  # (key, value) of one Kafka message


@dataclass(frozen=True, slots=True)
class TagModel:
    """How the workload draws one tag's values."""

    path: str
    source: str
    kind: str  # analog, counter, state, setpoint
    low: float
    high: float
    default: float


def tag_models(catalog: Catalog) -> list[TagModel]:
    """One model per catalog tag, in catalog order."""
    models = []
    for path, info in catalog.tags().items():
        spec = info.spec
        low = spec.low if spec.low is not None else (spec.min if spec.min is not None else 0.0)
        high = spec.high if spec.high is not None else (
            spec.max if spec.max is not None else 100.0)
        default = spec.default if spec.default is not None else (low + high) / 2
        models.append(TagModel(path, info.source.name, spec.kind, low, high, default))
    return models


def generate_readings(catalog: Catalog, n: int, *, seed: int = 7, step_ms: int = 100,
                      t0_ms: int = EPOCH_MS) -> list[Reading]:
    """``n`` readings of :func:`iter_readings` as a list."""
    return list(iter_readings(catalog, n, seed=seed, step_ms=step_ms, t0_ms=t0_ms))


def iter_readings(catalog: Catalog, n: int, *, seed: int = 7, step_ms: int = 100,
                  t0_ms: int = EPOCH_MS, chunk_ticks: int = 1000) -> Iterator[Reading]:
    """``n`` readings: every tag once per ``step_ms`` tick, in catalog order, seq per source.

    Analog tags wander sinusoidally around mid-range with 2% noise; counters count up;
    state tags say running and no fault; setpoints sit at their default.
    """
    if n < 1:
        raise ValueError(f"the workload needs at least one reading, got n={n}")
    models = tag_models(catalog)
    if not models:
        raise ValueError("the catalog has no tags to generate readings for")
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * math.pi, len(models))
    seq: dict[str, int] = {}
    made = 0
    for start in range(0, math.ceil(n / len(models)), chunk_ticks):  # bounded memory
        k = np.arange(start, start + chunk_ticks, dtype=np.float64)[:, None]
        noise = rng.normal(0.0, 0.02, (chunk_ticks, len(models)))
        wave = (0.25 * np.sin(2 * math.pi * k / 600.0 + phase[None, :]) + noise).tolist()
        for i, row in enumerate(wave):
            tick = start + i
            ts = t0_ms + tick * step_ms
            for j, m in enumerate(models):
                if made == n:
                    return
                s = seq.get(m.source, 0) + 1
                seq[m.source] = s
                made += 1
                yield Reading(m.path, ts, _value(m, tick, row[j]), Quality.GOOD, m.source,
                              t0_ms, s)


def _value(m: TagModel, tick: int, wave: float) -> float:
    if m.kind == "counter":
        return float(tick // 10)
    if m.kind == "state":
        return 1.0 if m.path.endswith("/running") else 0.0
    if m.kind == "setpoint":
        return m.default
    span = m.high - m.low
    return round(m.low + span * (0.5 + wave), 3)


def encode_reading(r: Reading) -> bytes:
    """Format (a): one reading as one JSON object."""
    return json.dumps(
        {"tag": r.tag, "ts": r.ts, "value": r.value, "quality": int(r.quality),
         "source": r.source, "epoch": r.epoch, "seq": r.seq},
        separators=(",", ":"),
    ).encode()


def decode_reading(payload: bytes | str) -> Reading:
    """Parse and check one format-(a) message, as much as ReadingFrame.decode checks a frame."""
    try:
        d = json.loads(payload)
        tag, ts, value, q = d["tag"], d["ts"], d["value"], d["quality"]
        source, epoch, seq = d["source"], d["epoch"], d["seq"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ContractError("bad-reading", f"not a reading object ({exc})") from exc
    if not isinstance(tag, str) or not tag or not isinstance(ts, int) or q not in (0, 1, 2):
        raise ContractError("bad-field", f"bad tag/ts/quality in {d!r:.200}")
    if value is not None and (not isinstance(value, int | float) or not math.isfinite(value)):
        raise ContractError("bad-field", f"value {value!r} is not a finite number or null")
    if not isinstance(source, str) or not isinstance(epoch, int) or not isinstance(seq, int):
        raise ContractError("bad-field", f"bad source/epoch/seq in {d!r:.200}")
    return Reading(tag, ts, value, Quality(q), source, epoch, seq)


def per_reading_messages(readings: Iterable[Reading]) -> Iterator[Message]:
    """Format (a): one Kafka message per reading, keyed by source."""
    for r in readings:
        yield r.source.encode(), encode_reading(r)


def frame_messages(readings: Iterable[Reading], frame_size: int = 1000) -> Iterator[Message]:
    """Format (b): each source's readings in frames of ``frame_size``, in production order."""
    builders: dict[str, FrameBuilder] = {}
    for r in readings:
        b = builders.get(r.source)
        if b is None:
            b = builders[r.source] = FrameBuilder(r.source, r.epoch, max_readings=frame_size)
        b.add(r.tag, r.ts, r.value, r.quality)
        if b.full:
            frame = b.flush()
            if frame is not None:
                yield frame.key(), frame.encode()
    for b in builders.values():
        frame = b.flush()
        if frame is not None:
            yield frame.key(), frame.encode()
