"""Walk an OPC-UA server's address space and collect its variables, for a catalog.

Browse sends many nodes per request with a page size per node, and BrowseNext follows
continuation points; HierarchicalReferences are followed forward from a root (Objects by
default), skipping the Server object. Then batched Reads fetch each variable's DataType,
ValueRank and AccessLevel, and the EURange/EngineeringUnits properties found through
HasProperty. Memory is one small record per node, so 100,000+ nodes are fine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from asyncua import Client, ua

from connectors.opcua_reads import BrowsedVariable, read_details, std

__all__ = ["BrowsedVariable", "Progress", "Walk", "Walker"]

logger = logging.getLogger(__name__)

HAS_PROPERTY = 46
_MAX_PER_BROWSE = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse
_MAX_PER_READ = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead
_SKIP = {2253, 86, 87}  # Server object, Types, Views (ns=0)
_RETRYABLE = {ua.StatusCodes.BadNoContinuationPoints, ua.StatusCodes.BadContinuationPointInvalid}
_SPLIT = {ua.StatusCodes.BadTooManyOperations, ua.StatusCodes.BadResponseTooLarge,
          ua.StatusCodes.BadEncodingLimitsExceeded}


class Progress:
    """Walk progress on a stream (stderr), at most every ``every`` seconds; None: silent."""

    def __init__(self, stream: TextIO | None, every: float = 0.5) -> None:
        self.stream = stream
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, browsed: int, found: int, variables: int, done: bool = False) -> None:
        """``browsed`` of the ``found`` nodes had their references browsed."""
        now = time.monotonic()
        if self.stream is None or (not done and now - self._last < self.every):
            return
        self._last = now
        rate = browsed / max(now - self.started, 1e-6)
        state = "done" if done else "browsing"
        self.stream.write(f"{state}: browsed {browsed} of {found} nodes found, {variables} "
                          f"variables, {rate:.0f} nodes/s\n")
        self.stream.flush()


@dataclass
class Walk:
    """What a walk found, and how: counts a caller shows or tests assert on."""

    namespaces: list[str]
    variables: list[BrowsedVariable] = field(default_factory=list)
    visited: int = 0
    browse_requests: int = 0
    continuation_points: int = 0
    errors: int = 0
    truncated: bool = False
    seconds: float = 0.0


@dataclass(slots=True)
class _Pending:
    nodeid: ua.NodeId
    path: tuple[str, ...]
    variable: BrowsedVariable | None  # set when the node is a variable
    tries: int = 0


class Walker:
    """Walks one connected client: ``walk = await Walker(client, ...).run(root)``.

    ``batch``: nodes per Browse request (lowered to the server's MaxNodesPerBrowse);
    ``max_refs``: RequestedMaxReferencesPerNode; ``max_nodes``: stop after this many.
    """

    def __init__(self, client: Client, *, batch: int = 250, max_refs: int = 1000,
                 max_nodes: int | None = None, progress: Progress | None = None) -> None:
        self.client = client
        self.batch = batch
        self.max_refs = max_refs
        self.max_nodes = max_nodes
        self.progress = progress or Progress(None)

    async def run(self, root: ua.NodeId | None = None) -> Walk:
        started = time.monotonic()
        root = root or std(ua.ObjectIds.ObjectsFolder)
        walk = Walk(await self.client.get_namespace_array())
        per_browse = await self._limit(_MAX_PER_BROWSE)
        self.batch = min(self.batch, per_browse or self.batch)
        seen: set[ua.NodeId] = {root}
        frontier: list[_Pending] = [_Pending(root, (), None)]
        browsed = 0
        while frontier:
            chunk, frontier = frontier[: self.batch], frontier[self.batch :]
            refs, retry = await self._browse(walk, [p.nodeid for p in chunk])
            for pending, found in zip(chunk, refs, strict=True):
                frontier.extend(self._expand(walk, pending, found, seen))
            for i in retry:
                chunk[i].tries += 1
                if chunk[i].tries < 3:
                    frontier.insert(0, chunk[i])  # alone next time: one continuation point
                else:
                    walk.errors += 1
                    logger.warning("giving up browsing %s: the server keeps refusing "
                                   "continuation points", chunk[i].nodeid.to_string())
            walk.visited = len(seen)
            browsed += len(chunk) - len(retry)
            self.progress.update(browsed, walk.visited, len(walk.variables))
            if self.max_nodes is not None and len(seen) >= self.max_nodes:
                walk.truncated = bool(frontier)
                break
        browse_end = time.monotonic()
        read_limit = await self._limit(_MAX_PER_READ)
        await read_details(self.client, walk.variables, min(read_limit or 3000, 3000))
        logger.info("browsed %d nodes in %.1f s, read %d variables' details in %.1f s",
                    walk.visited, browse_end - started, len(walk.variables),
                    time.monotonic() - browse_end)
        walk.seconds = time.monotonic() - started
        self.progress.update(browsed, walk.visited, len(walk.variables), done=True)
        return walk

    def _expand(self, walk: Walk, parent: _Pending, refs: Sequence[ua.ReferenceDescription],
                seen: set[ua.NodeId]) -> list[_Pending]:
        """The new nodes under ``parent``; a variable's properties fill in its record."""
        out: list[_Pending] = []
        for ref in refs:
            nodeid = ref.NodeId
            if ref.ReferenceTypeId == std(HAS_PROPERTY):
                if parent.variable is not None:
                    name = ref.BrowseName.Name
                    if name == "EURange":
                        parent.variable.eu_range = nodeid
                    elif name == "EngineeringUnits":
                        parent.variable.eu_units = nodeid
                continue  # properties describe their parent; they are not tags
            if nodeid in seen or (nodeid.NamespaceIndex == 0 and nodeid.Identifier in _SKIP):
                continue
            if self.max_nodes is not None and len(seen) >= self.max_nodes:
                break
            seen.add(nodeid)
            shown = ref.DisplayName.Text or ref.BrowseName.Name or nodeid.to_string()
            variable = None
            if ref.NodeClass == ua.NodeClass.Variable:
                variable = self._variable(parent, ref, shown)
                walk.variables.append(variable)
            out.append(_Pending(nodeid, (*parent.path, shown), variable))
        return out

    @staticmethod
    def _variable(parent: _Pending, ref: ua.ReferenceDescription, shown: str) -> BrowsedVariable:
        if parent.variable is not None:  # a component of a variable: tag of the same object
            outer = parent.variable
            return BrowsedVariable(ref.NodeId, f"{outer.name} {shown}", ref.BrowseName.Name,
                                   outer.holder, outer.holder_id)
        return BrowsedVariable(ref.NodeId, shown, ref.BrowseName.Name, parent.path,
                               parent.nodeid)

    async def _browse(self, walk: Walk, nodes: list[ua.NodeId]
                      ) -> tuple[list[list[ua.ReferenceDescription]], list[int]]:
        """Every reference of each node (all pages), and the nodes to browse again."""
        mask = ua.NodeClass.Object.value | ua.NodeClass.Variable.value
        params = ua.BrowseParameters(
            RequestedMaxReferencesPerNode=ua.UInt32(self.max_refs),
            NodesToBrowse=[ua.BrowseDescription(
                NodeId=n, BrowseDirection=ua.BrowseDirection.Forward,
                ReferenceTypeId=std(ua.ObjectIds.HierarchicalReferences),
                IncludeSubtypes=True, NodeClassMask=ua.UInt32(mask),
                ResultMask=ua.UInt32(ua.BrowseResultMask.All.value)) for n in nodes])
        try:
            results = await self.client.uaclient.browse(params)
        except ua.UaStatusCodeError as exc:
            if exc.code not in _SPLIT or len(nodes) == 1:
                raise
            self.batch = max(1, len(nodes) // 2)
            logger.info("server refused %d nodes per Browse (%s); trying %d", len(nodes),
                        exc, self.batch)
            half = len(nodes) // 2
            a, ra = await self._browse(walk, nodes[:half])
            b, rb = await self._browse(walk, nodes[half:])
            return a + b, ra + [half + i for i in rb]
        walk.browse_requests += 1
        refs: list[list[ua.ReferenceDescription]] = [[] for _ in nodes]
        retry: list[int] = []
        points: dict[int, bytes] = {}
        self._collect(walk, nodes, range(len(nodes)), results, refs, points, retry)
        while points:
            idx = list(points)
            results = await self.client.uaclient.browse_next(ua.BrowseNextParameters(
                ReleaseContinuationPoints=False, ContinuationPoints=[points[i] for i in idx]))
            walk.browse_requests += 1
            walk.continuation_points += len(idx)
            points = {}
            self._collect(walk, nodes, idx, results, refs, points, retry)
        return refs, retry

    @staticmethod
    def _collect(walk: Walk, nodes: list[ua.NodeId], idx: Sequence[int],
                 results: Sequence[ua.BrowseResult], refs: list[list[ua.ReferenceDescription]],
                 points: dict[int, bytes], retry: list[int]) -> None:
        for i, res in zip(idx, results, strict=True):
            if res.StatusCode.value in _RETRYABLE:
                retry.append(i)
                continue
            if not res.StatusCode.is_good():
                walk.errors += 1
                logger.warning("cannot browse %s: %s", nodes[i].to_string(), res.StatusCode)
                continue
            refs[i].extend(res.References)
            if res.ContinuationPoint:
                points[i] = res.ContinuationPoint

    async def _limit(self, ident: int) -> int:
        """An operation limit from ServerCapabilities (0: none, or not readable)."""
        try:
            value = await self.client.get_node(std(ident)).read_value()
        except ua.UaError:
            return 0
        return int(value) if isinstance(value, int) and value > 0 else 0
