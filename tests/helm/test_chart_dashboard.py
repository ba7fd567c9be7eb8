"""The operator dashboard in the chart: a Deployment like every stage's (same image,
hardening, probes on /healthz and /readyz), a Service with its page port, an Ingress only
when asked for, and a NetworkPolicy that lets the page be opened only from the operators'
ingress controller and lets the dashboard reach only Kafka, ClickHouse and DNS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from millstream.settings import Settings
from tests.helm.chart import (
    CHART,
    PROFILES,
    Rendered,
    containers,
    helm,
    render,
    secret_values,
)

NAME = "plant-millstream-dashboard"
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())


def _values(profile: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PROFILES[profile].read_text()) or {}
    return loaded


def _container(rendered: Rendered) -> dict[str, Any]:
    (c,) = containers(rendered.named("Deployment", NAME))
    return c


def _values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_dashboard_runs_like_every_stage(profile: str) -> None:
    rendered = render(PROFILES[profile])
    deployment = rendered.named("Deployment", NAME)
    assert deployment["spec"]["replicas"] == 1
    c = _container(rendered)
    assert c["args"] == ["dashboard"]
    (sink,) = containers(rendered.named("Deployment", "plant-millstream-sink"))
    assert c["image"] == sink["image"]
    assert c["securityContext"] == sink["securityContext"]
    assert (deployment["spec"]["template"]["spec"]["securityContext"]
            == rendered.named("Deployment", "plant-millstream-sink")
            ["spec"]["template"]["spec"]["securityContext"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 9464, "http": 8080}
    # the probes ask the metrics port, where MILLSTREAM_METRICS_PORT serves them
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["MILLSTREAM_METRICS_PORT"] == "9464"
    assert env["MILLSTREAM_DASHBOARD_HOST"] == "0.0.0.0"  # not loopback: the Service reaches it
    assert env["MILLSTREAM_DASHBOARD_PORT"] == str(ports["http"])
    # the proxy's X-Forwarded-Proto is trusted only where an Ingress is the way in
    assert env["MILLSTREAM_DASHBOARD_TRUST_FORWARDED"] == str(
        profile == "multi-site-secure").lower()
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])


def _stage_env(rendered: Rendered, secrets: dict[str, dict[str, str]] | None = None
               ) -> dict[str, str]:
    """The dashboard's environment: the ConfigMap and its env, secretKeyRefs resolved from
    the chart's Secrets or, for an existingSecret, from ``secrets``."""
    env: dict[str, str] = dict(rendered.named("ConfigMap", "plant-millstream-env")["data"])
    made = secret_values(rendered)
    made.update({f"{name}/{key}": value for name, keys in (secrets or {}).items()
                 for key, value in keys.items()})
    for item in _container(rendered)["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = made[f"{ref['name']}/{ref['key']}"]
    return env


def _settings(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for key in [k for k in os.environ if k.startswith("MILLSTREAM_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_dashboard_environment_becomes_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `millstream dashboard` reads (millstream/dashboard/run.py): Kafka with its
    login, the topic prefix, the ClickHouse DSN for history, where to serve the page."""
    dsn = "https://millstream:ch-Xy7-secret@clickhouse.data.svc:8443/plant"
    rendered = render(PROFILES["multi-site-secure"])
    settings = _settings(monkeypatch, _stage_env(
        rendered, {"clickhouse-millstream": {"url": dsn}}))
    assert settings.kafka_bootstrap == "kafka-0.kafka.data.svc:9093,kafka-1.kafka.data.svc:9093"
    assert settings.kafka_client_config() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "millstream", "sasl.password": "kafka-pw-Zq81-secret",
        "ssl.ca.location": "/etc/millstream/kafka-tls/ca.crt"}
    assert settings.topic_prefix == "millstream"
    assert settings.dsn == dsn
    assert settings.catalog == Path("/etc/millstream/catalog/plant.yaml")
    assert (settings.dashboard_host, settings.dashboard_port) == ("0.0.0.0", 8080)
    assert settings.dashboard_alarm_actions is True
    assert settings.dashboard_trust_forwarded is True  # behind the profile's TLS Ingress
    health = settings.health()
    assert (health.port, health.host) == (9464, "0.0.0.0")
    # the Kafka CA and the catalog are mounted where the settings point
    mounts = {m["mountPath"] for m in _container(rendered)["volumeMounts"]}
    assert {"/etc/millstream/kafka-tls", "/etc/millstream/catalog"} <= mounts
    # and nothing of the devices' or the commands' secrets
    assert not mounts & {"/etc/millstream/signing", "/var/lib/millstream/pki/opcua/own"}
    assert not [s for s in _container(rendered)["envFrom"] if "secretRef" in s]


def test_dashboard_reads_the_charts_clickhouse_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = render(PROFILES["minimal-site"], sets=("sink.enabled=false",))
    settings = _settings(monkeypatch, _stage_env(rendered))
    assert settings.dsn == "http://millstream:ch-pass-minimal-51@clickhouse.data.svc:8123/plant"
    assert settings.dashboard_alarm_actions is True
    assert settings.dashboard_trust_forwarded is False  # no Ingress: nobody's headers


def test_without_clickhouse_the_dashboard_runs_live_only() -> None:
    rendered = render(sets=("sink.enabled=false", "clickhouse.dsn="))
    env = {e["name"] for e in _container(rendered)["env"]}
    assert "MILLSTREAM_CLICKHOUSE_DSN" not in env
    assert not rendered.of_kind("Secret")
    egress = rendered.named("NetworkPolicy", NAME)["spec"]["egress"]
    assert {p["port"] for r in egress for p in r["ports"]} == {53, 9092, 9093}


def test_dashboard_service_exposes_the_page_and_the_metrics(tmp_path: Path) -> None:
    service = render().named("Service", NAME)["spec"]
    assert service["type"] == "ClusterIP"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {
        "metrics": (9464, "metrics"), "http": (8080, "http")}
    moved = render(_values_file(tmp_path, {"dashboard": {"port": 8000, "service": {"port": 80}}}))
    ports = {p["name"]: p for p in moved.named("Service", NAME)["spec"]["ports"]}
    assert (ports["http"]["port"], ports["http"]["targetPort"]) == (80, "http")
    c = _container(moved)
    assert {p["name"]: p["containerPort"] for p in c["ports"]}["http"] == 8000
    assert {e["name"]: e.get("value") for e in c["env"]}["MILLSTREAM_DASHBOARD_PORT"] == "8000"
    page = [r for r in moved.named("NetworkPolicy", NAME)["spec"]["ingress"]
            if r["ports"] == [{"port": 8000, "protocol": "TCP"}]]
    assert page, "the NetworkPolicy opens the container's page port"


def test_replicas_are_configurable(tmp_path: Path) -> None:
    rendered = render(_values_file(tmp_path, {"dashboard": {"replicas": 2}}))
    assert rendered.named("Deployment", NAME)["spec"]["replicas"] == 2


def _peers(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return list(rule.get("to", []))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_dashboard_egress_is_kafka_clickhouse_and_dns_only(profile: str) -> None:
    values = _values(profile)
    policy = render(PROFILES[profile]).named("NetworkPolicy", NAME)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    kafka = values.get("kafka", {}).get("networkPolicy", {})
    clickhouse = values.get("clickhouse", {}).get("networkPolicy", {})
    expected = {
        frozenset({53}): None,  # DNS: kube-dns by default
        frozenset(kafka.get("ports", [9092, 9093])): kafka.get("to", []),
        frozenset(clickhouse.get("ports", [8123, 8443])): clickhouse.get("to", []),
    }
    rules = policy["egress"]
    assert len(rules) == 3, rules
    for rule in rules:
        ports = frozenset(p["port"] for p in rule["ports"])
        assert ports in expected, f"egress to ports {sorted(ports)}"
        assert not [p for p in _peers(rule) if "ipBlock" in p], rule
        if expected[ports] is not None:
            assert _peers(rule) == expected[ports]
    dns = next(r for r in rules if {p["port"] for p in r["ports"]} == {53})
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]


def test_the_page_is_open_only_to_the_ingress_controller(tmp_path: Path) -> None:
    default = render().named("NetworkPolicy", NAME)["spec"]["ingress"]
    page = [r for r in default if r["ports"] == [{"port": 8080, "protocol": "TCP"}]]
    assert len(page) == 1 and page[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}]
    # the other rule is the metrics port's, like every stage's
    assert [r["ports"] for r in default if r not in page] == [[{"port": 9464, "protocol": "TCP"}]]
    secure = render(PROFILES["multi-site-secure"]).named("NetworkPolicy", NAME)["spec"]["ingress"]
    (traefik,) = [r for r in secure if r["ports"] == [{"port": 8080, "protocol": "TCP"}]]
    assert traefik["from"] == _values("multi-site-secure")["dashboard"]["networkPolicy"]["from"]
    # nobody: no rule for the page at all (a rule without `from` would admit everyone)
    closed = render(_values_file(tmp_path, {"dashboard": {"networkPolicy": {"from": []}}}))
    rules = closed.named("NetworkPolicy", NAME)["spec"]["ingress"]
    assert all(p["port"] != 8080 for r in rules for p in r["ports"])


def test_ingress_is_off_by_default() -> None:
    for profile in sorted(set(PROFILES) - {"multi-site-secure"}):
        assert not render(PROFILES[profile]).of_kind("Ingress"), profile


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_ingress_when_on(tmp_path: Path, version: str) -> None:
    values = {"dashboard": {"ingress": {
        "enabled": True, "className": "nginx",
        "annotations": {"nginx.ingress.kubernetes.io/auth-url": "https://$host/oauth2/auth"},
        "hosts": ["millstream.plant.example.com", "dash.example.com"],
        "tls": [{"secretName": "dash-tls", "hosts": ["millstream.plant.example.com"]}]}}}
    rendered = render(_values_file(tmp_path, values))
    (ingress,) = rendered.of_kind("Ingress")
    kubernetes_validate.validate(ingress, version, strict=True)
    spec = ingress["spec"]
    assert ingress["metadata"]["name"] == NAME
    assert ingress["metadata"]["annotations"] == values["dashboard"]["ingress"]["annotations"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "dash-tls", "hosts": ["millstream.plant.example.com"]}]
    assert [r["host"] for r in spec["rules"]] == ["millstream.plant.example.com",
                                                  "dash.example.com"]
    service_ports = {p["name"] for p in rendered.named("Service", NAME)["spec"]["ports"]}
    for rule in spec["rules"]:
        (path,) = rule["http"]["paths"]
        assert (path["path"], path["pathType"]) == ("/", "Prefix")  # the page's URLs are absolute
        assert path["backend"]["service"]["name"] == NAME
        assert path["backend"]["service"]["port"]["name"] in service_ports
    no_class = render(_values_file(tmp_path, {"dashboard": {"ingress": {"enabled": True}}}))
    assert "ingressClassName" not in no_class.named("Ingress", NAME)["spec"]


def test_dashboard_disabled_leaves_nothing_behind(tmp_path: Path) -> None:
    rendered = render(PROFILES["multi-site-secure"], sets=("dashboard.enabled=false",))
    for kind in ("Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "Ingress"):
        assert NAME not in rendered.names(kind), kind
    neither = render(sets=("dashboard.enabled=false", "sink.enabled=false"))
    assert "plant-millstream-clickhouse" not in neither.names("Secret")
    assert "plant-millstream-clickhouse" in render(sets=("sink.enabled=false",)).names("Secret")


def test_helm_test_can_wait_for_the_dashboard() -> None:
    (pod,) = render(sets=("tests.stage=dashboard",)).of_kind("Pod")
    assert f'url = "http://{NAME}:9464/readyz"' in pod["spec"]["containers"][0]["args"][0]


INVALID = [
    (["dashboard.port=9464"], ["dashboard.port is 9464, the same as observability.port"]),
    (["dashboard.ingress.enabled=true", "dashboard.ingress.hosts=null"],
     ["dashboard.ingress.hosts is empty"]),
    (["dashboard.ingress.enabled=true", "dashboard.networkPolicy.from=null"],
     ["dashboard.networkPolicy.from is empty", "ingress-nginx"]),
    (["dashboard.replicas=0"], ["/dashboard/replicas", "minimum: got 0, want 1"]),
    (["dashboard.ingress.hosts[0]=Plant_Dashboard"],
     ["/dashboard/ingress/hosts/0", "does not match pattern"]),
    (["dashboard.ingress.tls[0].secretName=tls"], ["/dashboard/ingress/tls/0", "hosts"]),
    (["dashboard.servce.port=80"], ["additional properties 'servce' not allowed"]),
]


@pytest.mark.parametrize(("sets", "fragments"), INVALID, ids=[s[0][0] for s in INVALID])
def test_invalid_dashboard_values_are_refused(sets: list[str], fragments: list[str]) -> None:
    args = ["template", "plant", str(CHART)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode != 0, f"helm accepted {sets}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"


def test_ingress_with_network_policies_off_needs_no_peer() -> None:
    rendered = render(sets=("dashboard.ingress.enabled=true", "dashboard.networkPolicy.from=null",
                            "networkPolicy.enabled=false"))
    assert rendered.names("Ingress") == [NAME] and not rendered.of_kind("NetworkPolicy")
