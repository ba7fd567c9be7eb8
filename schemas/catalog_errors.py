"""Catalog validation errors a person can act on: the file, the line, the entry, the value.

Pydantic reports where an error is as a path of keys and list indices (``loc``); this
module walks the YAML node tree along that path to find the line the entry starts on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

__all__ = ["describe_validation_error", "line_of"]

_HINT = ("fix the entries above; README.md, section 'Connect your plant', describes every key "
         "of the catalog")


def line_of(text: str, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the YAML entry at ``loc`` (keys and indices), or its nearest
    parent that exists; None if the text does not parse."""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None if node is None else node.start_mark.line + 1
    for key in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if child is None:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if not 0 <= key < len(node.value):
                break
            child = node.value[key]
        else:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _where(loc: Sequence[int | str]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out or "(top level)"


def describe_validation_error(path: Path, text: str, exc: ValidationError) -> str:
    """One line per problem: ``line N, machines[1].tags[2].register.type = 'x': message``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [part for part in err["loc"] if isinstance(part, int | str)]
        # pydantic appends the union/literal branch or validator name: keep the data path
        line = line_of(text, loc) if loc else None
        msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        value = err.get("input")
        shown = "" if isinstance(value, dict | list) or value is None else f" = {value!r}"
        at = f"line {line}, " if line is not None else ""
        where = f"{_where(loc)}{shown}: " if loc else ""
        lines.append(f"  {at}{where}{msg}")
    count = len(lines)
    head = f"the plant catalog {path} is invalid ({count} problem{'s' if count != 1 else ''}):"
    return "\n".join([head, *lines, _HINT])
