"""Tell a row ClickHouse refuses (poison) from a database that cannot write (transient).

``insert_isolating`` inserts rows ``0..n``; when an insert fails with an error that names
the data, it splits the range in halves until each refused row stands alone, inserts the
rest, and returns the refused rows with ClickHouse's message. An error that says the
database cannot write now (disk full, read-only, connection refused, timeouts) is raised
at once, for the sink to retry the whole batch later. An error of unknown kind splits
too, but if every row then fails the same way, the database is at fault: it is raised.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from clickhouse_connect.driver.exceptions import OperationalError

__all__ = ["DATA_CODES", "TRANSIENT_CODES", "error_code", "insert_isolating", "is_data_error",
           "is_transient"]

logger = logging.getLogger(__name__)

# ClickHouse error codes that mean "not now": the same insert can succeed later
TRANSIENT_CODES = frozenset({
    3,  # UNEXPECTED_END_OF_FILE
    16, 47, 60, 81,  # NO_SUCH_COLUMN_IN_TABLE, UNKNOWN_IDENTIFIER, UNKNOWN_TABLE, UNKNOWN_DATABASE
    74, 75, 76, 77,  # CANNOT_READ/WRITE_TO_FILE_DESCRIPTOR, CANNOT_OPEN_FILE, CANNOT_CLOSE_FILE
    159, 164, 202, 209, 210,  # TIMEOUT_EXCEEDED, READONLY, TOO_MANY_SIMULTANEOUS_QUERIES, ...
    236, 241, 242, 243, 252,  # ABORTED, MEMORY_LIMIT_EXCEEDED, TABLE_IS_READ_ONLY,
    #                           NOT_ENOUGH_SPACE, TOO_MANY_PARTS
    285, 319, 394, 425, 999, 1000,  # replicas, UNKNOWN_STATUS_OF_INSERT, cancelled, SYSTEM_ERROR
})
# codes that name the data: a row with such an error is refused by the table, not the disk
DATA_CODES = frozenset({
    6, 27, 38, 41, 53, 69, 70, 72, 131, 190, 321, 349, 469,
})
_CODE = re.compile(r"Code:\s*(\d+)")


def error_code(exc: BaseException) -> int | None:
    """The ClickHouse error code in an exception's message, if any."""
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


def is_transient(exc: BaseException) -> bool:
    """True when the database, not the data, made the insert fail (retry the batch)."""
    if isinstance(exc, OperationalError | OSError | ConnectionError | TimeoutError):
        return True
    code = error_code(exc)
    return code in TRANSIENT_CODES


def is_data_error(exc: BaseException) -> bool:
    """True when the error names the rows: a constraint, a type, a value out of range,
    or the client failing to serialise a value."""
    code = error_code(exc)
    if code is not None:
        return code in DATA_CODES
    return isinstance(exc, ValueError | TypeError | OverflowError | UnicodeError)


def insert_isolating(insert: Callable[[int, int], None], n: int
                     ) -> list[tuple[int, BaseException]]:
    """Insert rows ``0..n`` via ``insert(lo, hi)``; the refused rows and their errors.

    Raises the error when it is transient, or when every row failed with errors that do
    not name the data (the database is at fault, and nothing may be dropped).
    """
    refused: list[tuple[int, BaseException]] = []
    stored = 0
    todo = [(0, n)]
    while todo:
        lo, hi = todo.pop()
        try:
            insert(lo, hi)
            stored += hi - lo
            continue
        except Exception as exc:
            if is_transient(exc):
                raise
            if hi - lo == 1:
                refused.append((lo, exc))
                continue
            if lo == 0 and hi == n:
                logger.warning("an insert of %d rows failed (%s); splitting it to find the "
                               "rows ClickHouse refuses", n, str(exc).strip()[:200])
        mid = (lo + hi) // 2
        todo += [(mid, hi), (lo, mid)]  # the lower half first: rows keep their order
    if refused and not stored and not all(is_data_error(e) for _, e in refused):
        raise refused[0][1]
    refused.sort(key=lambda r: r[0])
    return refused
