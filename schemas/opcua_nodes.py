"""Resolve the catalog's node references against a connected OPC-UA server.

Namespace URIs and aliases become the server's current indices, and browse paths become
node ids in one batched TranslateBrowsePathsToNodeIds call per chunk. Shared by the
connector (subscribe) and the executor (write), so both find the same node for a tag.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from asyncua import Client, ua

from schemas.catalog import SourceSpec, TagSpec
from schemas.exceptions import CatalogError
from schemas.opcua import NodeRef, parse_browse_path, parse_node_ref

__all__ = ["NamespaceMap", "resolve_nodes", "to_nodeid"]

CHUNK = 500


class NamespaceMap:
    """A source's namespace aliases and default, against one server's namespace array."""

    def __init__(self, source: SourceSpec, endpoint: str, uris: Sequence[str]) -> None:
        self.source = source
        self.endpoint = endpoint
        self.uris = list(uris)

    def index(self, ns: int | str | None) -> int:
        """An index, alias or URI (None: the source's default namespace) -> server index."""
        if isinstance(ns, int):
            return ns
        if ns is None:
            if self.source.namespace is None:
                return 0
            ns = self.source.namespace
        uri = self.source.namespaces.get(ns, ns)
        try:
            return self.uris.index(uri)
        except ValueError:
            raise CatalogError(
                f"OPC-UA server {self.endpoint} has no namespace {uri!r} (source "
                f"{self.source.name!r}); it has: {', '.join(self.uris)}. Fix the source's "
                "'namespace'/'namespaces' or the tag's nsu=") from None


def to_nodeid(ref: NodeRef, index: int) -> ua.NodeId:
    """The asyncua NodeId of a parsed reference in namespace ``index`` (no string parsing,
    so string ids may hold ';' or quotes)."""
    ns = ua.Int16(index)
    if ref.id_type == "i":
        return ua.NodeId(ua.Int32(int(ref.identifier)), ns, ua.NodeIdType.Numeric)
    if ref.id_type == "g":
        return ua.NodeId(ua.Guid(ref.identifier), ns, ua.NodeIdType.Guid)
    if ref.id_type == "b":
        return ua.NodeId(ua.ByteString(base64.b64decode(ref.identifier)), ns,
                         ua.NodeIdType.ByteString)
    return ua.NodeId(ua.String(ref.identifier), ns, ua.NodeIdType.String)


async def resolve_nodes(
    client: Client, source: SourceSpec, endpoint: str, tags: Sequence[tuple[str, TagSpec]]
) -> tuple[dict[str, ua.NodeId], dict[str, str]]:
    """(node id by tag path, reason by tag path for tags whose node cannot be found)."""
    ns = NamespaceMap(source, endpoint, await client.get_namespace_array())
    found: dict[str, ua.NodeId] = {}
    missing: dict[str, str] = {}
    by_path: list[tuple[str, list[ua.QualifiedName]]] = []
    for path, tag in tags:
        if tag.node is not None:
            ref = parse_node_ref(tag.node)
            found[path] = to_nodeid(ref, ns.index(ref.namespace))
        elif tag.browse_path is not None:
            names = [ua.QualifiedName(name, ns.index(n))
                     for n, name in parse_browse_path(tag.browse_path)]
            by_path.append((path, names))
    for start in range(0, len(by_path), CHUNK):
        chunk = by_path[start : start + CHUNK]
        results = await client.nodes.objects.get_children_by_path(
            [names for _, names in chunk], raise_on_partial_error=False)
        for (path, _), nodes in zip(chunk, results, strict=True):
            node = nodes[0] if nodes else None
            if node is None:
                missing[path] = "no node at its browse_path on the server"
            else:
                found[path] = node.nodeid
    return found, missing
