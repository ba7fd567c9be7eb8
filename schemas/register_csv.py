"""Vendor register maps in CSV: one row per tag (placeholder until the CSV reader lands)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schemas.exceptions import CatalogError

__all__ = ["read_register_csv"]


def read_register_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, tag dict with a ``register`` entry) per data row of the CSV."""
    raise CatalogError(f"register map {path}: CSV register maps are not supported yet")
