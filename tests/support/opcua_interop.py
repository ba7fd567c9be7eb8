"""An OPC-UA server laid out unlike millstream's simulator, for interoperability tests.

``interop_server(port)`` serves, on 127.0.0.1 with no security, two vendor namespaces
(``urn:vendor:plc``, ``urn:vendor:devices``), folders and objects nested up to five levels
under Objects, variables with numeric, string (``"DB1"."Temp"``), GUID and opaque (``b=``)
node ids, AnalogItemType variables with EURange and EngineeringUnits properties, a
Boolean, Int16, Float, Double and String, a writable setpoint, a reference cycle and two
machines with the same name. The returned :class:`InteropLayout` says what is where, so
tests assert against it instead of repeating it. Browse results are paged
(:mod:`tests.support.opcua_paging`): the server honours RequestedMaxReferencesPerNode and
answers BrowseNext; ``max_refs`` caps references per node whatever the client asks.

    async with interop_server(free_port()) as (server, layout):
        ...  # connect a client to layout.endpoint
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from asyncua import Server, ua

from tests.support.opcua_paging import PagingViewService, enable_paging, std

__all__ = ["InteropLayout", "InteropVariable", "NodeBatch", "interop_server", "paging_of"]

PLC = "urn:vendor:plc"
DEVICES = "urn:vendor:devices"

_TYPES = {"Boolean": (ua.ObjectIds.Boolean, ua.VariantType.Boolean),
          "Int16": (ua.ObjectIds.Int16, ua.VariantType.Int16),
          "Float": (ua.ObjectIds.Float, ua.VariantType.Float),
          "Double": (ua.ObjectIds.Double, ua.VariantType.Double),
          "String": (ua.ObjectIds.String, ua.VariantType.String)}


@dataclass(frozen=True)
class InteropVariable:
    """One variable: its display-name path from Objects (machine last but one), its node
    id, that id as a catalog writes it (``nsu=URI;…``), and what the server says of it."""

    path: tuple[str, ...]
    nodeid: ua.NodeId
    node: str
    data_type: str  # Boolean, Int16, Float, Double or String
    unit: str | None = None  # EngineeringUnits DisplayName (AnalogItems only)
    low: float | None = None  # EURange
    high: float | None = None
    writable: bool = False
    browse_name: str = ""  # when it differs from the display name (path[-1])


@dataclass(frozen=True)
class InteropLayout:
    endpoint: str
    namespaces: dict[str, int]  # URI -> index on this server
    variables: list[InteropVariable]

    def variable(self, display_name: str, machine: str | None = None) -> InteropVariable:
        """The variable with this display name (under ``machine``, when names repeat)."""
        found = [v for v in self.variables if v.path[-1] == display_name
                 and (machine is None or v.path[-2] == machine)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} interop variables named {display_name!r}")
        return found[0]


def nid(ident: int | str | bytes | uuid.UUID, ns: int) -> ua.NodeId:
    """A node id of the type the identifier's Python type says (int numeric, str string,
    UUID guid, bytes opaque)."""
    index = ua.Int16(ns)
    if isinstance(ident, bool) or not isinstance(ident, int | str | bytes | uuid.UUID):
        raise TypeError(f"no node id type for {ident!r}")
    if isinstance(ident, int):
        return ua.NodeId(ua.Int32(ident), index, ua.NodeIdType.Numeric)
    if isinstance(ident, str):
        return ua.NodeId(ua.String(ident), index, ua.NodeIdType.String)
    if isinstance(ident, bytes):
        return ua.NodeId(ua.ByteString(ident), index, ua.NodeIdType.ByteString)
    return ua.NodeId(ua.Guid(str(ident)), index, ua.NodeIdType.Guid)


def _unit(code: str, name: str) -> ua.EUInformation:
    """EUInformation with the UNECE code packed into UnitId, as OPC UA Part 8 says."""
    unit_id = int.from_bytes(code.encode(), "big")
    return ua.EUInformation(NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                            UnitId=unit_id, DisplayName=ua.LocalizedText(name),
                            Description=ua.LocalizedText(name))


class NodeBatch:
    """AddNodes items collected and sent to the server's address space in one call each
    ``flush``: building thousands of nodes this way takes seconds, not minutes."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.items: list[ua.AddNodesItem] = []
        self._refs: list[tuple[ua.NodeId, ua.NodeId]] = []

    def folder(self, parent: ua.NodeId, nodeid: ua.NodeId, name: str,
               ref: int = ua.ObjectIds.Organizes, folder: bool = True) -> ua.NodeId:
        attrs = ua.ObjectAttributes(DisplayName=ua.LocalizedText(name),
                                    Description=ua.LocalizedText(name))
        typedef = ua.ObjectIds.FolderType if folder else ua.ObjectIds.BaseObjectType
        self._add(parent, nodeid, name, ua.NodeClass.Object, attrs, ref, typedef)
        return nodeid

    def variable(self, parent: ua.NodeId, nodeid: ua.NodeId, name: str, data_type: str,
                 value: object, *, display: str | None = None, writable: bool = False,
                 analog: tuple[str, str, float, float] | None = None) -> ua.NodeId:
        """A variable; ``analog=(unece code, unit, low, high)`` makes it an AnalogItem."""
        dtype, vtype = _TYPES[data_type]
        access = ua.AccessLevel.CurrentRead.mask | (
            ua.AccessLevel.CurrentWrite.mask if writable else 0)
        attrs = ua.VariableAttributes(
            DisplayName=ua.LocalizedText(display or name), Description=ua.LocalizedText(name),
            Value=ua.Variant(value, vtype), DataType=std(dtype),
            ValueRank=ua.ValueRank.Scalar, AccessLevel=access, UserAccessLevel=access)
        typedef = ua.ObjectIds.AnalogItemType if analog else ua.ObjectIds.BaseDataVariableType
        self._add(parent, nodeid, name, ua.NodeClass.Variable, attrs,
                  ua.ObjectIds.HasComponent, typedef)
        if analog is not None:
            code, unit, low, high = analog
            ns = nodeid.NamespaceIndex
            self._property(nodeid, nid(uuid.uuid4(), ns), "EURange",
                           ua.Variant(ua.Range(low, high)), ua.ObjectIds.Range)
            self._property(nodeid, nid(uuid.uuid4(), ns), "EngineeringUnits",
                           ua.Variant(_unit(code, unit)), ua.ObjectIds.EUInformation)
        return nodeid

    def reference(self, source: ua.NodeId, target: ua.NodeId) -> None:
        """An extra Organizes reference (e.g. one that closes a cycle)."""
        self._refs.append((source, target))

    def _property(self, parent: ua.NodeId, nodeid: ua.NodeId, name: str, value: ua.Variant,
                  dtype: int) -> None:
        attrs = ua.VariableAttributes(
            DisplayName=ua.LocalizedText(name), Value=value, DataType=std(dtype),
            ValueRank=ua.ValueRank.Scalar, AccessLevel=ua.AccessLevel.CurrentRead.mask,
            UserAccessLevel=ua.AccessLevel.CurrentRead.mask)
        self._add(parent, nodeid, name, ua.NodeClass.Variable, attrs, ua.ObjectIds.HasProperty,
                  ua.ObjectIds.PropertyType, browse_ns=0)

    def _add(self, parent: ua.NodeId, nodeid: ua.NodeId, name: str, cls: ua.NodeClass,
             attrs: object, ref: int, typedef: int, browse_ns: int | None = None) -> None:
        ns = nodeid.NamespaceIndex if browse_ns is None else browse_ns
        self.items.append(ua.AddNodesItem(
            ParentNodeId=parent, ReferenceTypeId=std(ref), RequestedNewNodeId=nodeid,
            BrowseName=ua.QualifiedName(name, ns), NodeClass=cls, NodeAttributes=attrs,
            TypeDefinition=std(typedef)))

    async def flush(self) -> None:
        items, self.items = self.items, []
        results = await self.server.iserver.isession.add_nodes(items)
        for item, res in zip(items, results, strict=True):
            if not res.StatusCode.is_good():
                raise RuntimeError(f"adding {item.BrowseName} ({item.RequestedNewNodeId}) "
                                   f"failed: {res.StatusCode}")
        refs, self._refs = self._refs, []
        if refs:
            status = await self.server.iserver.isession.add_references([
                ua.AddReferencesItem(SourceNodeId=s, TargetNodeId=t, IsForward=True,
                                     ReferenceTypeId=std(ua.ObjectIds.Organizes),
                                     TargetNodeClass=ua.NodeClass.Object) for s, t in refs])
            for st in status:
                st.check()


def _node_text(nodeid: ua.NodeId, uri: str) -> str:
    """``nsu=URI;x=…`` for a node id (GUID lower-case, ByteString base64)."""
    ident = nodeid.Identifier
    if isinstance(ident, bytes):
        text = f"b={base64.b64encode(ident).decode()}"
    elif nodeid.NodeIdType == ua.NodeIdType.Guid:
        text = f"g={ident!s}"
    elif nodeid.NodeIdType == ua.NodeIdType.String:
        text = f"s={ident!s}"
    else:
        text = f"i={ident!s}"
    return f"nsu={uri};{text}"


async def _build(server: Server, plc: int, dev: int) -> list[InteropVariable]:
    """The address space described in the module docstring; returns its variables."""
    b = NodeBatch(server)
    out: list[InteropVariable] = []
    uris = {plc: PLC, dev: DEVICES}
    objects = std(ua.ObjectIds.ObjectsFolder)

    def var(path: Sequence[str], parent: ua.NodeId, nodeid: ua.NodeId, name: str,
            dtype: str, value: object, display: str | None = None, writable: bool = False,
            analog: tuple[str, str, float, float] | None = None) -> None:
        b.variable(parent, nodeid, name, dtype, value, display=display, writable=writable,
                   analog=analog)
        shown = display or name
        out.append(InteropVariable(
            (*path, shown), nodeid, _node_text(nodeid, uris[nodeid.NamespaceIndex]), dtype,
            analog[1] if analog else None, analog[2] if analog else None,
            analog[3] if analog else None, writable, name))

    factory = b.folder(objects, nid(1000, plc), "Factory")
    hall_a = b.folder(factory, nid("HallA", plc), "Hall A")
    line3 = b.folder(hall_a, nid(1003, plc), "Line 3")
    b.reference(line3, factory)  # a cycle: Line 3 organizes its own ancestor
    filler = b.folder(line3, nid('"Filler2"', plc), "Filler 2", ua.ObjectIds.HasComponent,
                      folder=False)
    p: tuple[str, ...] = ("Factory", "Hall A", "Line 3", "Filler 2")
    var(p, filler, nid('"DB1"."Temp"', plc), "Temp", "Double", 21.5,
        analog=("CEL", "°C", 0.0, 120.0))
    var(p, filler, nid(5001, plc), "Pressure", "Float", 2.5,
        analog=("BAR", "bar", 0.0, 10.0))
    var(p, filler, nid(uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7"), plc),
        "Running", "Boolean", True)
    var(p, filler, nid(b"\x01\x02filler-count\xff", plc),
        "Bottle Count", "Int16", 42)
    var(p, filler, nid(5005, plc), "FL_SP", "Double", 80.0, display="Fill Level SP",
        writable=True, analog=("P1", "%", 0.0, 100.0))
    var(p, filler, nid('"DB1"."Batch.Code"', plc), "Batch.Code", "String", "B-1001")

    capper = b.folder(line3, nid(uuid.UUID("0b5f4c1e-2a57-4b7b-9b53-6d0c7c1e9a01"), dev),
                      "Capper 1", ua.ObjectIds.HasComponent, folder=False)
    p = ("Factory", "Hall A", "Line 3", "Capper 1")
    var(p, capper, nid(7001, dev), "Torque", "Double", 12.0,
        analog=("NU", "N·m", 0.0, 50.0))
    var(p, capper, nid("Capper1.Motor.Current", dev), "Motor.Current", "Float", 3.2,
        analog=("AMP", "A", 0.0, 20.0))
    var(p, capper, nid(b"capper-ready", dev), "Ready",
        "Boolean", False)

    hall_b = b.folder(factory, nid(1010, plc), "Hall B")
    line1 = b.folder(hall_b, nid("Line1", dev), "Line 1")
    for cell_no, cell_id in ((4, 1012), (5, 1014)):
        cell = b.folder(line1, nid(cell_id, dev), f"Cell {cell_no}")
        robot = b.folder(cell, nid(cell_id + 1, dev), "Robot 7", ua.ObjectIds.HasComponent,
                         folder=False)
        p = ("Factory", "Hall B", "Line 1", f"Cell {cell_no}", "Robot 7")
        var(p, robot, nid(7100 + cell_no * 10, dev), "Axis 1 Temp", "Double", 35.0,
            analog=("CEL", "°C", 0.0, 90.0))
        var(p, robot, nid(7101 + cell_no * 10, dev), "Axis-1 Temp", "Double", 36.0)

    house = b.folder(objects, nid(2000, dev), "Boiler House")
    boiler = b.folder(house, nid("Boiler", dev), "Boiler", ua.ObjectIds.HasComponent,
                      folder=False)
    p = ("Boiler House", "Boiler")
    var(p, boiler, nid(7201, dev), "Steam Pressure", "Double", 11.0,
        analog=("BAR", "bar", 0.0, 16.0))
    var(p, boiler, nid(7202, dev), "Flame On", "Boolean", True)
    await b.flush()
    return out


@asynccontextmanager
async def interop_server(port: int, *, max_refs: int | None = None,
                         max_points: int = 1000) -> AsyncIterator[tuple[Server, InteropLayout]]:
    """Start the interop server on 127.0.0.1:``port``; stop it on exit.

    ``max_refs``: the most references per node a Browse returns, whatever the client
    requests (None: the client's RequestedMaxReferencesPerNode, 0 meaning all);
    ``max_points``: continuation points open at once.
    """
    server = Server()
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{port}/interop/"
    server.set_endpoint(endpoint)
    server.set_server_name("millstream interop test server")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    server.set_identity_tokens([ua.AnonymousIdentityToken])
    plc = await server.register_namespace(PLC)
    dev = await server.register_namespace(DEVICES)
    variables = await _build(server, plc, dev)
    enable_paging(server, max_refs, max_points)
    await server.start()
    try:
        yield server, InteropLayout(endpoint, {PLC: plc, DEVICES: dev}, variables)
    finally:
        await server.stop()


def paging_of(server: Server) -> PagingViewService:
    """The server's paging view service: how many continuation points it handed out."""
    view = server.iserver.view_service
    assert isinstance(view, PagingViewService)
    return view
