"""Connect to an OPC-UA server, walk it from a root, and turn the walk into catalog YAML.

What ``millstream browse opcua`` runs; the walk itself is :mod:`connectors.opcua_browse`,
the proposal :mod:`connectors.opcua_catalog`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from urllib.parse import urlparse

from asyncua import Client, ua

from connectors.opcua_browse import Progress, Walk, Walker
from connectors.opcua_catalog import namespace_aliases, propose, render_catalog, slug
from schemas.catalog import SourceSpec
from schemas.exceptions import MillstreamError
from schemas.opcua import OpcUaSecurity, parse_browse_path, parse_node_ref
from schemas.opcua_client import connect_client

__all__ = ["browse_opcua", "catalog_text", "make_client", "resolve_root"]

logger = logging.getLogger(__name__)


async def make_client(url: str, timeout: float, security: OpcUaSecurity | None = None,
                      pki_dir: Path | None = None) -> Client:
    """THE place the browse command creates and connects its OPC-UA client, secured like a
    connector (:func:`schemas.opcua_client.connect_client`). The health watchdog gets the
    request timeout: asyncua's default gives up on a server after 1 s, and a big server
    busy answering a large Browse or Read can take longer than that."""
    source = SourceSpec(name="browse", protocol="opcua", endpoint=url,
                        security=security or OpcUaSecurity())
    return await connect_client(source, url, pki_dir, timeout=timeout, watchdog_s=timeout)


async def resolve_root(client: Client, text: str | None) -> ua.NodeId | None:
    """--root as a node id (ns=, nsu=URI) or a browse path from Objects; None: Objects."""
    if not text:
        return None
    try:
        ref = parse_node_ref(text)
    except ValueError:
        ref = None
    uris = await client.get_namespace_array()
    if ref is not None:
        ns = ref.namespace
        if isinstance(ns, str):
            if ns not in uris:
                raise MillstreamError(f"--root {text!r}: the server has no namespace {ns!r}; "
                                      f"it has: {', '.join(uris)}")
            ns = uris.index(ns)
        return ua.NodeId.from_string(ref.with_index(ns))
    node = client.nodes.objects
    for ns_part, name in parse_browse_path(text):
        children = [(await c.read_browse_name(), c) for c in await node.get_children()]
        match = [c for q, c in children if q.Name == name and (
            ns_part is None or ns_part in (q.NamespaceIndex, uris[q.NamespaceIndex]))]
        if not match:
            have = ", ".join(sorted(q.Name for q, _ in children)) or "nothing"
            raise MillstreamError(f"--root {text!r}: no {name!r} under {node.nodeid.to_string()}"
                                  f" (it has: {have}); give a browse path from Objects")
        node = match[0]
    return node.nodeid


async def browse_opcua(url: str, *, root: str | None = None, max_nodes: int | None = None,
                       max_refs: int = 1000, timeout: float = 30.0,
                       progress: Progress | None = None, security: OpcUaSecurity | None = None,
                       pki_dir: Path | None = None) -> Walk:
    """Connect, walk from ``root`` and disconnect; errors name the server and what to do."""
    try:
        client = await make_client(url, timeout, security, pki_dir)
        try:
            walker = Walker(client, max_refs=max_refs, max_nodes=max_nodes, progress=progress)
            return await walker.run(await resolve_root(client, root))
        finally:
            with contextlib.suppress(Exception):
                await client.disconnect()
    except (OSError, TimeoutError, ua.UaError) as exc:
        raise MillstreamError(f"cannot browse OPC-UA server {url}: {exc or type(exc).__name__};"
                              " check the URL, that the server runs, and the security options "
                              "(--policy, --mode, --username, --password-env)") from exc


def catalog_text(walk: Walk, url: str, *, source: str | None, enterprise: str, site: str,
                 max_nodes: int | None, security: OpcUaSecurity | None = None) -> str:
    """The proposed catalog for a walk (see :mod:`connectors.opcua_catalog`)."""
    aliases = namespace_aliases(walk.namespaces,
                                (v.nodeid.NamespaceIndex for v in walk.variables))
    machines = propose(walk.variables, aliases)
    host = urlparse(url).hostname or "server"
    partial = (f"stopped after --max-nodes {max_nodes}; more nodes were left unbrowsed"
               if walk.truncated else "")
    return render_catalog(
        machines, endpoint=url, source=source or f"opcua-{slug(host, '-', 'server')}",
        namespaces={a: walk.namespaces[i] for i, a in aliases.items()},
        enterprise=enterprise, site=site, partial=partial,
        security=security.model_dump(exclude_defaults=True) if security else None)
