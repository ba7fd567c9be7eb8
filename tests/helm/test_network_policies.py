"""NetworkPolicies follow IEC 62443 zones and conduits: the device networks (the PLCs'
zone) are reached by the connectors of their own site and by the executor, and by no
other stage; every stage may reach Kafka and DNS; only the sink and the dashboard reach
ClickHouse."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yaml

from tests.helm.chart import PROFILES, render

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _values(profile: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PROFILES[profile].read_text()) or {}
    return loaded


def _site_networks(values: dict[str, Any]) -> dict[str, list[Network]]:
    sites = values.get("connectors", {}).get("sites", [])
    return {site["name"]: [ipaddress.ip_network(n["cidr"]) for n in site.get("deviceNetworks", [])]
            for site in sites}


def _egress_blocks(policy: dict[str, Any]) -> list[Network]:
    return [ipaddress.ip_network(peer["ipBlock"]["cidr"])
            for rule in policy["spec"]["egress"] for peer in rule.get("to", [])
            if "ipBlock" in peer]


def _component(policy: dict[str, Any]) -> str:
    labels: dict[str, str] = policy["spec"]["podSelector"]["matchLabels"]
    return labels["app.kubernetes.io/component"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_only_connectors_and_executor_reach_the_devices(profile: str) -> None:
    rendered = render(PROFILES[profile])
    sites = _site_networks(_values(profile))
    devices = [net for nets in sites.values() for net in nets]
    reached: dict[str, set[Network]] = {}
    for policy in rendered.of_kind("NetworkPolicy"):
        component = _component(policy)
        blocks = _egress_blocks(policy)
        touching = {b for b in blocks for d in devices if b.overlaps(d)}
        if component not in ("connector", "executor"):
            assert not touching, f"{component} may reach device networks {touching}"
            assert not blocks, f"{component} has ipBlock egress {blocks}"
        reached.setdefault(component, set()).update(touching)
    if devices:
        assert reached["connector"] == set(devices)
        assert reached["executor"] == set(devices)  # by default: every site's networks


def test_a_sites_connectors_reach_only_that_sites_devices() -> None:
    rendered = render(PROFILES["multi-site-secure"])
    sites = _site_networks(_values("multi-site-secure"))
    for site, nets in sites.items():
        policy = rendered.named("NetworkPolicy", f"plant-millstream-connect-{site}")
        assert set(_egress_blocks(policy)) == set(nets)
        ports = sorted(p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]
                       if any("ipBlock" in peer for peer in rule.get("to", [])))
        expected = sorted(p for n in _values("multi-site-secure")["connectors"]["sites"]
                          if n["name"] == site for d in n["deviceNetworks"] for p in d["ports"])
        assert ports == expected


def test_executor_device_networks_can_be_narrowed() -> None:
    rendered = render(PROFILES["multi-site-secure"],
                      sets=("executor.deviceNetworks[0].cidr=10.1.3.0/24",
                            "executor.deviceNetworks[0].ports[0]=4840"))
    policy = rendered.named("NetworkPolicy", "plant-millstream-executor")
    assert _egress_blocks(policy) == [ipaddress.ip_network("10.1.3.0/24")]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_egress_is_limited_to_each_stages_conduits(profile: str) -> None:
    values = _values(profile)
    rendered = render(PROFILES[profile])
    kafka = set(values.get("kafka", {}).get("networkPolicy", {}).get("ports", [9092, 9093]))
    clickhouse = set(values.get("clickhouse", {}).get("networkPolicy", {})
                     .get("ports", [8123, 8443]))
    for policy in rendered.of_kind("NetworkPolicy"):
        component = _component(policy)
        rules = policy["spec"]["egress"]
        assert all(rule.get("ports") or rule.get("to") for rule in rules), \
            f"{component} has an egress rule open to every address and port"
        dns = [r for r in rules if {p["port"] for p in r.get("ports", [])} == {53}]
        assert dns and {p["protocol"] for p in dns[0]["ports"]} == {"UDP", "TCP"}
        plain = {p["port"] for r in rules if not any("ipBlock" in peer for peer in r.get("to", []))
                 for p in r.get("ports", [])}
        reads_clickhouse = component in ("sink", "dashboard")
        allowed = {53} | kafka | (clickhouse if reads_clickhouse else set())
        assert plain <= allowed, f"{component} reaches ports {plain - allowed}"
        assert kafka <= plain, f"{component} cannot reach Kafka"
        if reads_clickhouse:
            assert clickhouse <= plain, f"{component} cannot reach ClickHouse"
        else:
            assert not (clickhouse - kafka) & plain, f"{component} reaches ClickHouse"
        # ingress: the ports of its Service only (the metrics port(s); the dashboard page)
        ingress_ports = {p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]}
        service = rendered.named("Service", policy["metadata"]["name"])
        assert ingress_ports == {p["port"] for p in service["spec"]["ports"]}


def test_kafka_and_metrics_peers_are_used_when_given() -> None:
    rendered = render(PROFILES["multi-site-secure"])
    worker = rendered.named("NetworkPolicy", "plant-millstream-worker")["spec"]
    kafka_rule = next(r for r in worker["egress"] if r["ports"] == [{"port": 9093,
                                                                      "protocol": "TCP"}])
    assert kafka_rule["to"][0]["podSelector"] == {"matchLabels": {"app": "kafka"}}
    sources = worker["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} \
        in sources
    # the helm test pod may still reach /readyz
    (test_pod,) = rendered.of_kind("Pod")
    assert any(peer.get("podSelector", {}).get("matchLabels", {}).items()
               <= test_pod["metadata"]["labels"].items() for peer in sources
               if "podSelector" in peer and "namespaceSelector" not in peer)
