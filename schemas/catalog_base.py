"""The base of every catalog section: immutable, and a key it does not know is an error
(a misspelt option must not be ignored)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FrozenSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)
