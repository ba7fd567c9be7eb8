"""Propose an editable plant catalog from a walk of an OPC-UA server.

A machine is the object or folder directly holding variables, its tags those variables.
Area and line are the two folders nearest above the machine (below the walk's root),
``unassigned`` where there are fewer. Names are slugified to the catalog's patterns and
de-duplicated with a suffix; each tag keeps its display name as description and names its
node as ``nsu=<alias>;…``, with the aliases on the source. Pure logic: no I/O.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import yaml
from asyncua import ua

from connectors.opcua_reads import BrowsedVariable

__all__ = [
    "MachineProposal",
    "TagProposal",
    "namespace_aliases",
    "node_text",
    "propose",
    "render_catalog",
    "slug",
    "unique",
]

PLACEHOLDER = "unassigned"
_NUMERIC = {"SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64",
            "Float", "Double", "Number", "Integer", "UInteger"}
_TEXT = {"String", "LocalizedText"}


def slug(text: str, sep: str, fallback: str = "x") -> str:
    """Lower-case ASCII letters and digits, every other run of characters one ``sep``
    (``"Hall A/Line 3"`` -> ``hall-a-line-3``); ``fallback`` when nothing is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    out = re.sub(r"[^a-z0-9]+", sep, ascii_text.lower()).strip(sep)
    return out or fallback


def unique(name: str, taken: set[str], sep: str) -> str:
    """``name``, or ``name<sep>2``, ``name<sep>3``… whichever is not taken; marks it taken."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}{sep}{n}"
    taken.add(candidate)
    return candidate


def namespace_aliases(uris: Sequence[str], used: Iterable[int]) -> dict[int, str]:
    """A short YAML-safe alias for each used namespace index > 0, from its URI's last
    meaningful segment (``urn:vendor:plc`` -> ``plc``, ``http://x.com/UA/Robot/`` ->
    ``robot``), de-duplicated with a suffix."""
    taken: set[str] = set()
    out: dict[int, str] = {}
    for index in sorted(set(used)):
        if index == 0 or index >= len(uris):
            continue
        parts = [p for p in re.split(r"[:/#?]+", uris[index]) if re.search(r"[A-Za-z]", p)]
        base = slug(parts[-1] if parts else "", "_", "ns")
        if not base[0].isalpha():
            base = f"ns_{base}"
        out[index] = unique(base, taken, "_")
    return out


def node_text(nodeid: ua.NodeId, alias: str | None) -> str:
    """The node id as a catalog writes it: ``nsu=<alias>;s=…``, or without a namespace
    for namespace 0 (GUIDs in lower case, opaque ids in base64)."""
    ident = nodeid.Identifier
    if isinstance(ident, bytes):
        body = f"b={base64.b64encode(ident).decode()}"
    elif nodeid.NodeIdType == ua.NodeIdType.Guid:
        body = f"g={str(ident).lower()}"
    elif nodeid.NodeIdType == ua.NodeIdType.String:
        body = f"s={ident!s}"
    else:
        body = f"i={ident!s}"
    return body if alias is None else f"nsu={alias};{body}"


@dataclass(frozen=True)
class TagProposal:
    name: str
    kind: str
    unit: str
    low: float | None
    high: float | None
    description: str
    node: str
    note: str  # the data type, and "writable" (shown as a YAML comment)
    skipped: str = ""  # why the tag is written commented out ("" when it is not)


@dataclass
class MachineProposal:
    name: str
    area: str
    line: str
    description: str
    tags: list[TagProposal] = field(default_factory=list)


def kind_of(v: BrowsedVariable) -> tuple[str, str]:
    """(kind, why it cannot be a tag or ""): Boolean state, String text, numbers analog."""
    base = v.base_type or v.data_type
    if not v.scalar:
        return "analog", f"an array of {v.data_type or 'values'}"
    if base == "Boolean":
        return "state", ""
    if base in _TEXT:
        return "text", ""
    if base == "Enumeration":
        return "state", ""
    if base in _NUMERIC:
        return "analog", ""
    return "analog", f"a {v.data_type or 'value of unknown type'}, not a number or text"


def propose(variables: Sequence[BrowsedVariable], aliases: dict[int, str]
            ) -> list[MachineProposal]:
    """One machine per object holding variables, in the order the walk found them."""
    machines: dict[ua.NodeId, MachineProposal] = {}
    taken_machines: set[str] = set()
    taken_tags: dict[ua.NodeId, set[str]] = {}
    for v in variables:
        m = machines.get(v.holder_id)
        if m is None:
            above = list(v.holder[:-1])
            area = above[-2] if len(above) >= 2 else above[0] if above else PLACEHOLDER
            line = above[-1] if len(above) >= 2 else PLACEHOLDER
            own = v.holder[-1] if v.holder else "root"
            m = MachineProposal(unique(slug(own, "-", "machine"), taken_machines, "-"),
                                slug(area, "-", PLACEHOLDER), slug(line, "-", PLACEHOLDER),
                                "/".join(v.holder) or own)
            machines[v.holder_id] = m
            taken_tags[v.holder_id] = set()
        kind, skipped = kind_of(v)
        notes = [v.data_type or "unknown type"] + (["writable"] if v.writable else [])
        description = v.name if v.browse_name in ("", v.name) else f"{v.name} ({v.browse_name})"
        m.tags.append(TagProposal(
            unique(slug(v.name, "_", "tag"), taken_tags[v.holder_id], "_"), kind,
            v.unit or "", v.low, v.high, description,
            node_text(v.nodeid, aliases.get(v.nodeid.NamespaceIndex)), ", ".join(notes),
            skipped))
    return list(machines.values())


def _scalar(value: object) -> str:
    """A YAML flow scalar: plain when it reads back as the same string, else quoted."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_./-]*", text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _tag_line(t: TagProposal) -> str:
    fields: list[tuple[str, object]] = [("name", t.name)]
    if t.kind != "analog":
        fields.append(("kind", t.kind))
    if t.unit:
        fields.append(("unit", t.unit))
    fields += [(k, v) for k, v in (("low", t.low), ("high", t.high)) if v is not None]
    fields += [("description", t.description), ("node", t.node)]
    body = ", ".join(f"{k}: {_scalar(v)}" for k, v in fields)
    if t.skipped:
        return f"      # - {{{body}}}  # skipped: {t.skipped}"
    return f"      - {{{body}}}  # {t.note}"


HEADER = """\
# Proposed by `millstream browse opcua {endpoint}`: {tags} tags in {machines} machines.{partial}
# Edit it, then point MILLSTREAM_CATALOG at it. What to check:
# - enterprise and site; each machine's area and line, proposed from the two folders above
#   it ("unassigned" where there were fewer). Paths are enterprise/site/area/line/machine/tag.
# - machine and tag names (lower case, '-' in machines, '_' in tags); descriptions keep the
#   server's display names. Delete the machines and tags you do not need.
# - kind: analog, state (booleans), text (strings) as proposed; mark counters 'counter', and
#   setpoints 'setpoint' with min/max for the safety gateway (the tags noted "writable").
# - unit, low and high come from each variable's EngineeringUnits and EURange.
# Commented-out tags are values millstream cannot read as a number or text.
"""


def render_catalog(machines: Sequence[MachineProposal], *, endpoint: str, source: str,
                   namespaces: dict[str, str], enterprise: str, site: str,
                   partial: str = "", security: dict[str, object] | None = None) -> str:
    """The catalog YAML: a commented header, the source, one flow mapping per tag line."""
    tags = sum(1 for m in machines for t in m.tags if not t.skipped)
    lines = [HEADER.format(endpoint=endpoint, tags=tags, machines=len(machines),
                           partial=f"\n# PARTIAL: {partial}" if partial else "").rstrip("\n"),
             f"enterprise: {_scalar(enterprise)}", f"site: {_scalar(site)}", "",
             "sources:", f"  - name: {_scalar(source)}", "    protocol: opcua",
             f"    endpoint: {_scalar(endpoint)}"]
    if namespaces:
        pairs = ", ".join(f"{a}: {_scalar(u)}" for a, u in namespaces.items())
        lines.append(f"    namespaces: {{{pairs}}}  # aliases used by nsu= in the nodes")
    if security:  # the options browse connected with (no secrets: only where they live)
        pairs = ", ".join(f"{k}: {_scalar(str(v))}" for k, v in security.items())
        lines.append(f"    security: {{{pairs}}}")
    lines += ["", "machines:" + ("" if machines else " []")]
    for m in machines:
        active = [t for t in m.tags if not t.skipped]
        lines += [f"  - name: {_scalar(m.name)}", f"    area: {_scalar(m.area)}",
                  f"    line: {_scalar(m.line)}", f"    source: {_scalar(source)}",
                  f"    description: {_scalar(m.description)}",
                  "    tags:" + ("" if active else " []")]
        lines += [_tag_line(t) for t in m.tags]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
