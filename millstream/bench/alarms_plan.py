"""The fault schedule of ``bench alarms``: every fault kind the simulator knows, seeded.

:func:`fault_schedule` is a pure function of the catalog, the seed and the duration. After
a warm-up (``lead_in_s``, for the detectors to learn the plant) the run is cut into equal
slots of about ``every_s``, one fault per slot, so that no two faults overlap anywhere in
the plant and each is followed by a quiet stretch (the last 40 % of its slot at least) in
which any alarm is a false one. The kinds take turns in a seeded order, so that every kind
has a fault as soon as there are as many slots as kinds; each kind's machines take turns
the same way, and a stuck sensor freezes one of its machine's analog tags, chosen by the
seed. A fault lasts 15-40 % of its slot: 90-240 s with the default 10-minute slots.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from connectors.simulator.faults import Fault, FaultKind, FaultPlan, applies_to
from schemas.catalog import Catalog
from schemas.exceptions import MillstreamError

__all__ = ["EVERY_S", "LEAD_IN_S", "MIN_SLOT_S", "ScheduleError", "fault_schedule",
           "shortest_s"]

logger = logging.getLogger(__name__)

LEAD_IN_S = 300.0  # no fault in the first 5 simulated minutes: the detectors warm up
EVERY_S = 600.0  # about one fault every 10 simulated minutes
MIN_SLOT_S = 120.0  # a shorter run gets shorter slots, never shorter than this
FAULT_SHARE = (0.15, 0.40)  # a fault lasts this share of its slot
QUIET_SHARE = 0.40  # and the end of its slot is quiet at least this share of it


class ScheduleError(MillstreamError):
    """No schedule with a fault of every kind fits this catalog or this duration."""


def shortest_s(lead_in_s: float = LEAD_IN_S) -> float:
    """The shortest run that holds one fault of each kind after the warm-up."""
    return lead_in_s + len(FaultKind) * MIN_SLOT_S


def fault_schedule(catalog: Catalog, seed: int, duration_s: float, *,
                   lead_in_s: float = LEAD_IN_S, every_s: float = EVERY_S) -> FaultPlan:
    """Faults of every kind over ``duration_s`` simulated seconds, one at a time, seeded."""
    kinds = list(FaultKind)
    machines = {k: [m for m in catalog.machines if applies_to(k, m)] for k in kinds}
    missing = [k.value for k, ms in machines.items() if not ms]
    if missing:
        raise ScheduleError(
            f"no machine of the catalog can have a {' or '.join(missing)} fault, and bench "
            "alarms injects every kind: use a catalog with cnc, press and compressor "
            "machines (connectors/simulator/simulation.yaml says which model runs which)")
    if duration_s < shortest_s(lead_in_s):
        raise ScheduleError(
            f"{duration_s / 3600:g} simulated hours are too short for one fault of each of the "
            f"{len(kinds)} kinds ({MIN_SLOT_S:g} s each) after the {lead_in_s:g} s warm-up: "
            f"use --hours {math.ceil(shortest_s(lead_in_s) / 36) / 100:g} or more")
    n = max(len(kinds), int((duration_s - lead_in_s) // every_s))
    slot = (duration_s - lead_in_s) / n
    rng = np.random.default_rng([seed & ((1 << 64) - 1), 0xA1A8])
    order = [kinds[i] for i in rng.permutation(len(kinds))]
    turns = {k: [ms[i] for i in rng.permutation(len(ms))] for k, ms in machines.items()}
    faults: list[Fault] = []
    for i in range(n):
        kind = order[i % len(order)]
        machine = turns[kind][(i // len(order)) % len(turns[kind])]
        duration = float(rng.uniform(*FAULT_SHARE)) * slot
        room = (1 - QUIET_SHARE) * slot - duration
        start = lead_in_s + i * slot + float(rng.uniform(0.0, room))
        tag = None
        if kind is FaultKind.STUCK_SENSOR:
            analog = [t.name for t in machine.tags if t.kind == "analog"]
            tag = analog[int(rng.integers(len(analog)))]
        faults.append(Fault(kind, machine.name, tag, round(start, 1), round(duration, 1)))
    return FaultPlan(faults)
