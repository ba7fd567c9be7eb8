"""Subscriptions and monitored items for a source's tags, from the catalog's settings.

Each tag's :class:`~schemas.opcua.MonitoringSpec` (the source's, overridden by the tag's)
gives its sampling interval, queue size and deadband. Tags are grouped into subscriptions
by publishing interval, at most ``chunk`` items each (asyncua lags above a few thousand
items per subscription). Each item's client handle is chosen here, so a notification
finds its tag by handle, without hashing node ids. A deadband filter the server refuses
is reported for its tag and the item is created again without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from connectors.opcua_values import status_name
from schemas.opcua import Deadband, MonitoringSpec

__all__ = [
    "FILTER_REFUSALS", "Group", "Item", "Subscribed", "add_items", "plan", "request", "subscribe",
    "vanished",
]

# what a server answers when it will not apply a data-change filter to an item
FILTER_REFUSALS = frozenset({
    ua.StatusCodes.BadDeadbandFilterInvalid,
    ua.StatusCodes.BadFilterNotAllowed,
    ua.StatusCodes.BadMonitoredItemFilterInvalid,
    ua.StatusCodes.BadMonitoredItemFilterUnsupported,
})
KEEPALIVE_MS = 5000.0  # the server sends an empty publish at least this often
MAX_QUEUE = 100


@dataclass(frozen=True, slots=True)
class Item:
    """One tag to monitor: its client handle, path, node and settings."""

    handle: int
    path: str
    nodeid: ua.NodeId
    monitoring: MonitoringSpec


@dataclass(frozen=True, slots=True)
class Group:
    """The items of one subscription, which share a publishing interval."""

    publishing_ms: float
    items: list[Item]


@dataclass
class Subscribed:
    """What :func:`subscribe` made: subscriptions, and the tags it could not monitor as
    asked (status name by tag path)."""

    subscriptions: list[Subscription] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # no item at all (no such node, ...)
    unfiltered: dict[str, str] = field(default_factory=dict)  # item made without its filter


def plan(items: Iterable[Item], chunk: int) -> list[Group]:
    """Items grouped by publishing interval (in first-seen order), ``chunk`` per group."""
    by_interval: dict[float, list[Item]] = {}
    for item in items:
        publishing = item.monitoring.publishing_ms or 1000.0
        by_interval.setdefault(publishing, []).append(item)
    return [Group(ms, group[i : i + chunk]) for ms, group in by_interval.items()
            for i in range(0, len(group), chunk)]


def data_change_filter(deadband: Deadband | None) -> ua.DataChangeFilter | None:
    """The filter for a deadband: report status or value changes beyond it."""
    if deadband is None:
        return None
    kind = ua.DeadbandType.Absolute if deadband.kind == "absolute" else ua.DeadbandType.Percent
    return ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                               DeadbandType=kind, DeadbandValue=float(deadband.value))


def queue_size(spec: MonitoringSpec) -> int:
    """The item's queue: as configured, else room for every sample of one publishing
    interval (plus one), so a value sampled between two publishes is not overwritten."""
    if spec.queue_size is not None:
        return spec.queue_size
    sampling = max(spec.sampling_ms or 0.0, 1.0)
    return min(MAX_QUEUE, math.ceil((spec.publishing_ms or sampling) / sampling) + 1)


def request(item: Item, *, with_filter: bool = True) -> ua.MonitoredItemCreateRequest:
    """The CreateMonitoredItems entry of one item (its Value attribute, reporting)."""
    spec = item.monitoring
    params = ua.MonitoringParameters(
        ClientHandle=ua.UInt32(item.handle),
        SamplingInterval=ua.Duration(spec.sampling_ms if spec.sampling_ms is not None else -1.0),
        QueueSize=ua.UInt32(queue_size(spec)),
        DiscardOldest=True,
    )
    flt = data_change_filter(spec.deadband) if with_filter else None
    if flt is not None:  # else the default: a null ExtensionObject, as the standard wants
        params.Filter = flt
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=item.nodeid, AttributeId=ua.AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting,
        RequestedParameters=params,
    )


def subscription_parameters(publishing_ms: float) -> ua.CreateSubscriptionParameters:
    return ua.CreateSubscriptionParameters(
        RequestedPublishingInterval=ua.Duration(publishing_ms),
        RequestedLifetimeCount=ua.UInt32(10000),
        RequestedMaxKeepAliveCount=ua.UInt32(max(1, int(KEEPALIVE_MS / publishing_ms))),
        MaxNotificationsPerPublish=ua.UInt32(0),  # no limit
        PublishingEnabled=True,
        Priority=ua.Byte(0),
    )


async def add_items(sub: Subscription, items: list[Item], out: Subscribed) -> None:
    """Create ``items`` in ``sub``; those refused for their filter are created again
    without it. Failures go into ``out``. Network errors propagate."""
    results = await sub.create_monitored_items([request(i) for i in items])
    retry: list[Item] = []
    for item, result in zip(items, results, strict=True):
        if not isinstance(result, ua.StatusCode):
            continue
        code = result.value & 0xFFFF0000
        if code in FILTER_REFUSALS and item.monitoring.deadband is not None:
            out.unfiltered[item.path] = status_name(result) or "refused"
            retry.append(item)
        else:
            out.failed[item.path] = status_name(result) or "refused"
    if retry:
        again = await sub.create_monitored_items([request(i, with_filter=False) for i in retry])
        for item, result in zip(retry, again, strict=True):
            if isinstance(result, ua.StatusCode):
                out.failed[item.path] = status_name(result) or "refused"


async def subscribe(client: Client, groups: list[Group]) -> Subscribed:
    """One subscription per group (iterator mode, unbounded queue: nothing dropped)."""
    out = Subscribed()
    for group in groups:
        sub = await client.create_subscription(subscription_parameters(group.publishing_ms),
                                               None, queue_maxsize=0)
        out.subscriptions.append(sub)
        await add_items(sub, group.items, out)
    return out


async def vanished(client: Client, items: list[Item], chunk: int) -> dict[str, str]:
    """Status name by tag path for the items whose node the server no longer has.

    Some servers (asyncua among them) go silent on a monitored item whose node was
    deleted, instead of notifying BadNodeIdUnknown: one Read of NodeClass per ``chunk``
    items finds those.
    """
    gone: dict[str, str] = {}
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        results = await client.uaclient.read_attributes([i.nodeid for i in part],
                                                        ua.AttributeIds.NodeClass)
        for item, dv in zip(part, results, strict=True):
            if dv.StatusCode is not None and not dv.StatusCode.is_good():
                gone[item.path] = status_name(dv.StatusCode) or "Bad"
    return gone
