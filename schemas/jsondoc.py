"""Parsing one Kafka message value as a JSON object, with the contract's error reasons."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from schemas.exceptions import ContractError

__all__ = ["dump_compact", "load_object", "plain"]

_ENCODER = msgspec.json.Encoder()


def plain(obj: Any) -> Any:
    """``obj`` as JSON-ready builtins: dataclasses (nested ones too) become dicts in field
    order, as ``dataclasses.asdict`` makes them, but in C and without deep copies of
    builtins (about 10x faster on a twin record)."""
    return msgspec.to_builtins(obj)


def dump_compact(doc: Any) -> bytes:
    """Compact JSON of a document of builtins and dataclasses, in C. A NaN or infinity is
    written as null, where ``json.dumps(allow_nan=False)`` would raise: every float field
    of the contracts that use this is nullable or finite by construction."""
    return _ENCODER.encode(doc)


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
