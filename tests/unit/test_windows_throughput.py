"""The aggregation keeps up: well over 100k readings/s in one process (frames of 1000).

Bounds are loose on purpose (the machine may be busy with other tests); the numbers are
printed (``pytest -s``) and ``python -m streams.bench`` reports them on their own.
"""

from __future__ import annotations

from schemas.catalog import Catalog
from streams.bench import measure


def test_throughput(catalog: Catalog) -> None:
    rates = measure(catalog, n_frames=100, frame_size=1000)
    print({k: f"{v:,.0f}/s" for k, v in rates.items()})
    assert rates["windows"] > 300_000  # aggregation alone: measured 1.2M-5.5M/s on 2 cores
    assert rates["processor"] > 60_000  # end to end, dominated by JSON decode + validation
