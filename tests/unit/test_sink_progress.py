"""Which readings count as stored: only those known to be done, so out-of-order frames are
never dropped as redeliveries."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from sinks.progress import Ranges, SeqProgress


def test_frames_out_of_order_are_not_taken_for_redeliveries() -> None:
    p = SeqProgress()
    p.accept("s", 1, 1, 1000)
    p.accept("s", 1, 2001, 3000)  # frame 1001..2000 is late (a producer retry reordered it)
    assert p.missing("s", 1, 1001, 2000) == [(1001, 2000)]
    assert p.missing("s", 1, 500, 2500) == [(1001, 2000)]
    assert p.missing("s", 1, 2001, 3000) == []  # a true redelivery
    assert p.missing("s", 2, 1, 10) == [(1, 10)]  # another epoch: nothing done


@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 40)), max_size=30),
       st.integers(1, 300), st.integers(0, 60))
def test_ranges_match_a_set(adds: list[tuple[int, int]], lo: int, width: int) -> None:
    r, done = Ranges(), set()
    for a, w in adds:
        r.add(a, a + w)
        done |= set(range(a, a + w + 1))
    assert all(h + 1 < lo2 for h, lo2 in zip(r.hi, r.lo[1:], strict=False))  # merged
    hi = lo + width
    missing = {s for a, b in r.missing(lo, hi) for s in range(a, b + 1)}
    assert missing == set(range(lo, hi + 1)) - done


def test_many_frames_in_random_order_end_as_one_range() -> None:
    r = Ranges()
    frames = [(i * 100 + 1, i * 100 + 100) for i in range(200)]
    random.Random(3).shuffle(frames)
    for lo, hi in frames:
        assert r.missing(lo, hi) == [(lo, hi)]
        r.add(lo, hi)
    assert (r.lo, r.hi) == ([1], [20_000])
