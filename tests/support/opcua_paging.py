"""Continuation points for an asyncua test server, which returns every reference at once.

asyncua 2.1's server ignores RequestedMaxReferencesPerNode and does not implement
BrowseNext, so a client's paging code is never exercised against it. ``enable_paging``
gives one server a view service that honours the client's limit (and an optional server
cap), hands out continuation points, and answers BrowseNext; other servers are unchanged.
"""

from __future__ import annotations

import itertools
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.server import binary_server_asyncio
from asyncua.server.address_space import AddressSpace, ViewService
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary

__all__ = ["PagingViewService", "enable_paging", "std"]


def std(ident: int) -> ua.NodeId:
    """A namespace-0 node id (standard types, references, objects)."""
    return ua.NodeId(ua.Int32(ident))


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


class PagingViewService(ViewService):
    """Browse that returns at most ``min(requested, max_refs)`` references per node and a
    continuation point for the rest; at most ``max_points`` points are open at once
    (beyond that a node's result is BadNoContinuationPoints, as real servers do)."""

    def __init__(self, aspace: AddressSpace, max_refs: int | None, max_points: int) -> None:
        super().__init__(aspace)
        self.max_refs = max_refs
        self.max_points = max_points
        self.issued = 0  # continuation points handed out: tests assert paging happened
        self.refused = 0  # BadNoContinuationPoints results
        self._points: dict[bytes, tuple[list[ua.ReferenceDescription], int]] = {}
        self._ids = itertools.count(1)

    def browse(self, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
        caps = [n for n in (params.RequestedMaxReferencesPerNode, self.max_refs) if n]
        limit = min(caps) if caps else 0
        return [self._page(self._browse(desc), limit) for desc in params.NodesToBrowse]

    def browse_next(self, params: ua.BrowseNextParameters) -> list[ua.BrowseResult]:
        out: list[ua.BrowseResult] = []
        for point in params.ContinuationPoints:
            entry = self._points.pop(point, None)
            if entry is None:
                out.append(ua.BrowseResult(
                    StatusCode=_status(ua.StatusCodes.BadContinuationPointInvalid)))
            elif params.ReleaseContinuationPoints:
                out.append(ua.BrowseResult())
            else:
                rest, limit = entry
                out.append(self._page(ua.BrowseResult(References=rest), limit))
        return out

    def _page(self, res: ua.BrowseResult, limit: int) -> ua.BrowseResult:
        if not limit or len(res.References) <= limit or not res.StatusCode.is_good():
            return res
        if len(self._points) >= self.max_points:
            self.refused += 1
            return ua.BrowseResult(StatusCode=_status(ua.StatusCodes.BadNoContinuationPoints))
        point = next(self._ids).to_bytes(8, "big")
        self._points[point] = (res.References[limit:], limit)
        self.issued += 1
        return ua.BrowseResult(StatusCode=res.StatusCode, ContinuationPoint=point,
                               References=res.References[:limit])


class _PagingProcessor(UaProcessor):
    """Answers BrowseNext for servers whose view service pages; defers everything else."""

    async def _process_message(self, typeid: Any, requesthdr: Any, seqhdr: Any,
                               body: Any) -> Any:
        view = self.iserver.view_service
        if (typeid == std(ua.ObjectIds.BrowseNextRequest_Encoding_DefaultBinary)
                and isinstance(view, PagingViewService)):
            if self.session is None or not self.session.is_activated():
                raise ServiceError(ua.StatusCodes.BadSessionNotActivated)
            params = struct_from_binary(ua.BrowseNextParameters, body)
            response = ua.BrowseNextResponse()
            response.Parameters.Results = view.browse_next(params)
            self.send_response(requesthdr.RequestHandle, seqhdr, response)
            return True
        return await super()._process_message(typeid, requesthdr, seqhdr, body)


def enable_paging(server: Server, max_refs: int | None = None,
                  max_points: int = 1000) -> PagingViewService:
    """Make ``server`` (initialised, before or after start) page its Browse results.

    Installs, once per process, a connection processor that answers BrowseNext only for
    servers with a :class:`PagingViewService`; every other server behaves as before.
    """
    view = PagingViewService(server.iserver.aspace, max_refs, max_points)
    server.iserver.view_service = view

    async def browse_next(params: ua.BrowseNextParameters) -> list[ua.BrowseResult]:
        return view.browse_next(params)

    server.iserver.isession.browse_next = browse_next  # type: ignore[method-assign,assignment]
    binary_server_asyncio.UaProcessor = _PagingProcessor  # type: ignore[misc]
    return view
