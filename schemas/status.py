"""Status files: how a stage process reports its counters to whoever supervises it.

Each long-running stage (connector, worker, sink, executor) can be given a path; it
rewrites a small JSON object there atomically every second and once more when it stops.
``millstream demo`` reads them for the live status line and the final summary.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["read_status", "write_status"]

logger = logging.getLogger(__name__)


def write_status(path: Path | None, doc: dict[str, Any]) -> None:
    """Replace the status at ``path`` (nothing when None). Best effort: a status file is a
    supervision aid, so a full disk or a missing folder is logged, never raised."""
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("cannot write the status file %s: %s", path, exc)


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status written at ``path``, or None if there is none (yet)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
