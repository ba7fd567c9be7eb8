"""Poison rows vs a database that cannot write: the bisection's decisions."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from sinks.poison import error_code, insert_isolating, is_data_error, is_transient

CONSTRAINT = ("Code: 469. DB::Exception: Constraint `ts_plausible` is violated. "
              "(VIOLATED_CONSTRAINT)")
DISK_FULL = ("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. "
             "(NOT_ENOUGH_SPACE)")


class Table:
    """Stores row numbers; refuses the ones in ``bad`` with ``error``, or every insert."""

    def __init__(self, bad: set[int], error: str = CONSTRAINT, down: str | None = None) -> None:
        self.bad, self.error, self.down = bad, error, down
        self.rows: list[int] = []
        self.calls = 0

    def insert(self, lo: int, hi: int) -> None:
        self.calls += 1
        if self.down is not None:
            raise DatabaseError(self.down)
        if any(r in self.bad for r in range(lo, hi)):
            raise DatabaseError(self.error)
        self.rows.extend(range(lo, hi))


def test_classifies_clickhouse_errors() -> None:
    assert error_code(DatabaseError(DISK_FULL)) == 243
    assert is_transient(DatabaseError(DISK_FULL))
    assert is_transient(OperationalError("Error HTTPConnectionPool: connection refused"))
    assert not is_transient(DatabaseError(CONSTRAINT)) and is_data_error(DatabaseError(CONSTRAINT))
    assert is_data_error(ValueError("cannot serialise")) and not is_data_error(RuntimeError("?"))


@pytest.mark.parametrize("bad", [set(), {0}, {999}, {3, 4, 500}, set(range(10, 20))])
def test_refused_rows_are_isolated_and_the_rest_stored_in_order(bad: set[int]) -> None:
    table = Table(bad)
    refused = insert_isolating(table.insert, 1000)
    assert [r for r, _ in refused] == sorted(bad)
    assert all("VIOLATED_CONSTRAINT" in str(e) for _, e in refused)
    assert table.rows == [r for r in range(1000) if r not in bad]
    assert table.calls <= 1 + 2 * len(bad) * 11  # about 2 log2(n) inserts per bad row


def test_a_database_that_cannot_write_raises_and_refuses_nothing() -> None:
    table = Table(set(), down=DISK_FULL)
    with pytest.raises(DatabaseError, match="NOT_ENOUGH_SPACE"):
        insert_isolating(table.insert, 1000)
    assert table.calls == 1 and table.rows == []


def test_an_unknown_error_on_every_row_is_the_database_not_the_data() -> None:
    table = Table(set(range(8)), error="Code: 4242. DB::Exception: something new")
    with pytest.raises(DatabaseError, match="something new"):
        insert_isolating(table.insert, 8)
    # ... but an unknown error on one row while the others are stored refuses that row
    table = Table({5}, error="Code: 4242. DB::Exception: something new")
    assert [r for r, _ in insert_isolating(table.insert, 8)] == [5]
