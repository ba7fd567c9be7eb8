"""``millstream status``: every stage, up or down, with its lag, rates and last error.

Reads the newest run folder of ``millstream demo`` (or ``--run-dir``), and any stage
endpoint given with ``--url`` (``http://host:9464``, e.g. through ``kubectl
port-forward``). Prints a table, or one JSON object with ``--json``. Exits 0 when every
stage found is up, 1 otherwise (or when none is found).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from millstream.stages import StageView, Target, find_run_dir, look, targets_in

if TYPE_CHECKING:
    from millstream.commands import Add
    from millstream.settings import Settings

__all__ = ["cmd_status", "format_table", "register"]

_COLUMNS = ("STAGE", "STATE", "LAG", "IN/S", "OUT/S", "ERRORS", "LAST ERROR")
_MAX_ERROR = 70


def register(add: Add) -> None:
    p = add("status", cmd_status,
            "show every running stage: up or down, lag, rates, the last error")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="the run folder to read (default: the newest under "
                        "$MILLSTREAM_DATA_DIR/runs)")
    p.add_argument("--url", action="append", default=[], metavar="URL",
                   help="a stage's health endpoint, e.g. http://127.0.0.1:9464 (repeatable)")
    p.add_argument("--interval", type=float, default=2.0,
                   help="seconds between the two looks the rates come from (0: no rates)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    run_dir: Path | None = args.run_dir
    if run_dir is None and not args.url:
        run_dir = find_run_dir(settings.data_dir)
    targets = [Target(url=u) for u in args.url]
    if run_dir is not None:
        if not run_dir.is_dir():
            print(f"millstream: no run folder at {run_dir}; give an existing one with "
                  "--run-dir, or a stage's endpoint with --url", file=sys.stderr)
            return 1
        targets = targets_in(run_dir) + targets
    views = look(targets, max(0.0, args.interval))
    if args.json:
        print(json.dumps({"run_dir": str(run_dir) if run_dir else None,
                          "stages": [v.to_json() for v in views]}))
    elif views:
        print(format_table(views))
    if not views:
        where = f"in {run_dir}" if run_dir else f"under {settings.data_dir / 'runs'}"
        print(f"millstream: no stage found {where}; start one (`make demo`), or name its "
              "endpoint with --url", file=sys.stderr)
        return 1
    return 0 if all(v.state == "up" for v in views) else 1


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _cells(v: StageView) -> list[str]:
    state = v.state if not v.reason else f"{v.state}: {v.reason}"
    error = v.last_error or "-"
    if len(error) > _MAX_ERROR:
        error = error[: _MAX_ERROR - 1] + "…"
    return [v.name, state, _num(v.lag), _num(v.in_per_s), _num(v.out_per_s), _num(v.errors),
            error]


def format_table(views: Sequence[StageView]) -> str:
    """Aligned columns, numbers right-aligned; a not-ready or down stage says why."""
    rows: list[list[str]] = [list(_COLUMNS), *(_cells(v) for v in views)]
    for r in rows[1:]:
        if len(r[1]) > _MAX_ERROR:  # the reason can be long: keep the table readable
            r[1] = r[1][: _MAX_ERROR - 1] + "…"
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    right = {2, 3, 4, 5}

    def line(r: list[str]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(rows[0]), *(line(r) for r in rows[1:])])

