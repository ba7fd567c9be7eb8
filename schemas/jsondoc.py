"""Parsing one Kafka message value as a JSON object, with the contract's error reasons."""

from __future__ import annotations

import json
from typing import Any

from schemas.exceptions import ContractError

__all__ = ["load_object"]


def load_object(payload: bytes | str | None, what: str = "message") -> dict[str, Any]:
    """The message as a dict; raises :class:`ContractError` ``empty-message``, ``not-json``
    or ``not-an-object`` (``what`` names the message in the error, e.g. "frame")."""
    if payload is None:
        raise ContractError("empty-message", f"the {what} has no value")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContractError("not-json", f"the {what} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise ContractError("not-an-object", f"the {what} is a {type(doc).__name__}")
    return doc
