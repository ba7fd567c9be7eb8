"""The chart lints strictly and renders, for every ci/ profile, manifests that the
Kubernetes schemas accept and that keep the hardening the issue asks for."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from tests.helm.chart import CHART, PROFILES, Rendered, containers, helm, render, secret_values

# the oldest Kubernetes the chart supports (policy/v1, autoscaling/v2) and the newest known
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
# kinds from CRDs, not in the Kubernetes schemas: checked by their own tests
CRD_KINDS = {"ServiceMonitor"}


@pytest.fixture(scope="module", params=sorted(PROFILES))
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return render(PROFILES[request.param])


def test_the_four_profiles_exist() -> None:
    assert {"defaults", "minimal-site", "multi-site-secure", "ha"} <= set(PROFILES)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_helm_lint_strict(profile: str) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(PROFILES[profile]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_kubernetes(rendered: Rendered, version: str) -> None:
    checked = 0
    for doc in rendered.docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is not valid Kubernetes "
                        f"{version}: {path}: {exc.message}")
        checked += 1
    assert checked >= 10, f"only {checked} manifests rendered"


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"]
    pod: dict[str, Any] = spec["template"]["spec"] if "template" in spec else spec
    return pod


def _pods(rendered: Rendered) -> list[dict[str, Any]]:
    """Every workload, and the helm test Pod."""
    return rendered.workloads() + rendered.of_kind("Pod")


def test_every_container_is_hardened(rendered: Rendered) -> None:
    for doc in _pods(rendered):
        pod = _pod_spec(doc)
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, doc["metadata"]["name"]
        assert pod.get("automountServiceAccountToken") is False, doc["metadata"]["name"]
        for c in containers(doc):
            where = f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert not sc["capabilities"].get("add"), where
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            limits = c.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= set(limits), f"{where} has no cpu/memory limits"
            # a read-only root still gets a writable /tmp
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where


def test_every_stage_has_probes_on_healthz_and_readyz(rendered: Rendered) -> None:
    for doc in rendered.workloads():
        for c in containers(doc):
            where = f"{doc['metadata']['name']} container {c['name']}"
            ports = {p["name"] for p in c["ports"]}
            live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
            assert (live["path"], ready["path"]) == ("/healthz", "/readyz"), where
            assert live["port"] in ports and ready["port"] in ports, where
            env = {e["name"]: e.get("value") for e in c["env"]}
            port = next(p["containerPort"] for p in c["ports"] if p["name"] == live["port"])
            assert env["MILLSTREAM_METRICS_PORT"] == str(port), where
            assert env["MILLSTREAM_METRICS_HOST"] == "0.0.0.0", where  # the kubelet probes it


def test_data_dir_is_writable_scratch(rendered: Rendered) -> None:
    env = rendered.named("ConfigMap", "plant-millstream-env")["data"]
    for doc in rendered.workloads():
        volumes = {v["name"]: v for v in _pod_spec(doc)["volumes"]}
        for c in containers(doc):
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in volumes[mounts[env["MILLSTREAM_DATA_DIR"]]]


def test_no_secret_value_appears_in_a_configmap(rendered: Rendered) -> None:
    # a user name is an identifier, not a secret (the SASL user may well be "millstream")
    secrets = {k: v for k, v in secret_values(rendered).items()
               if len(v) >= 6 and not k.endswith("/username")}
    assert secrets, "every profile has a secret (at least the ClickHouse DSN)"
    config = [str(v) for cm in rendered.of_kind("ConfigMap") for v in cm["data"].values()]
    for key, value in secrets.items():
        assert not [text for text in config if value in text], f"{key} is in a ConfigMap"
    # nor anywhere else outside a Secret: not in a container's env, args or annotations
    elsewhere = json.dumps([d for d in rendered.docs if d["kind"] != "Secret"])
    for key, value in secrets.items():
        assert json.dumps(value)[1:-1] not in elsewhere, f"{key} appears outside its Secret"
    # and the plain settings name no secret at all
    env = rendered.named("ConfigMap", "plant-millstream-env")["data"]
    assert not [k for k in env if "PASSWORD" in k or k.endswith("_DSN")]


def test_every_workload_has_a_service_pdb_and_network_policy(rendered: Rendered) -> None:
    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return selector.items() <= labels.items()

    for doc in rendered.workloads():
        name = doc["metadata"]["name"]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert selects(rendered.named("Service", name)["spec"]["selector"], labels)
        pdb = rendered.named("PodDisruptionBudget", name)["spec"]
        assert selects(pdb["selector"]["matchLabels"], labels)
        policy = rendered.named("NetworkPolicy", name)["spec"]
        assert selects(policy["podSelector"]["matchLabels"], labels)
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        # no other workload's pods are selected by this one's selectors
        for other in rendered.workloads():
            if other is not doc:
                assert not selects(policy["podSelector"]["matchLabels"],
                                   other["spec"]["template"]["metadata"]["labels"])


def test_secrets_reach_only_the_stages_that_need_them() -> None:
    rendered = render(PROFILES["multi-site-secure"])
    seen: dict[str, set[str]] = {}
    for doc in rendered.workloads():
        component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        for c in containers(doc):
            refs = {e["valueFrom"]["secretKeyRef"]["name"]
                    for e in c["env"] if "valueFrom" in e}
            refs |= {s["secretRef"]["name"] for s in c["envFrom"] if "secretRef" in s}
            volumes = {v["name"]: v for v in _pod_spec(doc)["volumes"]}
            refs |= {volumes[m["name"]]["secret"]["secretName"] for m in c["volumeMounts"]
                     if "secret" in volumes[m["name"]]}
            seen.setdefault(component, set()).update(refs)
    who = {name: {comp for comp, refs in seen.items() if name in refs}
           for name in {n for refs in seen.values() for n in refs}}
    # the existingSecret: the sink writes, the dashboard reads the history
    assert who["clickhouse-millstream"] == {"sink", "dashboard"}
    assert who["plant-millstream-opcua-env"] == {"connector", "executor"}
    assert who["plant-millstream-opcua-own"] == {"connector", "executor"}
    assert who["plant-millstream-kafka-sasl"] == {"connector", "worker", "sink", "executor",
                                                  "dashboard"}
    assert who["plant-millstream-command-signing"] == {"worker", "executor"}
    # the worker signs with the private key, the executor holds only the public one, named
    # as the executor's trusted keys folder wants it: <signer>.pub
    for doc in rendered.workloads():
        for volume in _pod_spec(doc)["volumes"]:
            if volume["name"] == "signing":
                items = {item["key"]: item["path"] for item in volume["secret"]["items"]}
                component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
                assert items == {"worker": {"private.pem": "private.pem"},
                                 "executor": {"public.pem": "streams.pub"}}[component]


def test_connectors_per_source_and_per_site() -> None:
    per_source = render(PROFILES["ha"])
    names = [d["metadata"]["name"] for d in per_source.workloads()
             if d["metadata"]["labels"]["app.kubernetes.io/component"] == "connector"]
    assert names == ["plant-millstream-connect-opcua-sim", "plant-millstream-connect-modbus-sim"]
    modbus = per_source.named("Deployment", "plant-millstream-connect-modbus-sim")
    (c,) = containers(modbus)
    assert c["args"] == ["connect", "modbus-sim", "--frame-ms", "200", "--frame-idle-ms", "5",
                         "--endpoint", "10.0.5.20:5020"]
    assert modbus["spec"]["replicas"] == 1 and modbus["spec"]["strategy"]["type"] == "Recreate"

    per_site = render(PROFILES["multi-site-secure"])
    hall_a = per_site.named("Deployment", "plant-millstream-connect-hall-a")
    cs = list(containers(hall_a))
    assert [c["args"][1] for c in cs] == ["hall-a-plc", "hall-a-press"]
    assert [p["containerPort"] for c in cs for p in c["ports"]] == [9464, 9465]
    assert hall_a["spec"]["template"]["spec"]["nodeSelector"] == {"millstream.io/site": "hall-a"}
    service_ports = [p["port"] for p in
                     per_site.named("Service", "plant-millstream-connect-hall-a")["spec"]["ports"]]
    assert service_ports == [9464, 9465]


def test_workers_scale_within_the_partitions() -> None:
    ha = render(PROFILES["ha"])
    workers = ha.named("StatefulSet", "plant-millstream-worker")
    assert "replicas" not in workers["spec"]  # the HPA owns it
    headless = ha.named("Service", workers["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    hpa = ha.named("HorizontalPodAutoscaler", "plant-millstream-worker")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                     "name": "plant-millstream-worker"}
    assert hpa["maxReplicas"] <= 12  # the profile's readings partitions
    kinds = {m["type"]: m for m in hpa["metrics"]}
    assert kinds["Resource"]["resource"]["name"] == "cpu"
    lag = kinds["External"]["external"]["metric"]
    assert lag["selector"]["matchLabels"] == {"consumergroup": "millstream-streams",
                                              "topic": "millstream.readings"}
    assert render(PROFILES["defaults"]).named(
        "Deployment", "plant-millstream-worker")["spec"]["replicas"] == 1


def test_service_monitor_scrapes_every_metrics_port() -> None:
    rendered = render(PROFILES["multi-site-secure"])
    (monitor,) = rendered.of_kind("ServiceMonitor")
    scraped = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])
    selector = monitor["spec"]["selector"]["matchLabels"]
    for service in rendered.of_kind("Service"):
        assert selector.items() <= service["metadata"]["labels"].items()
        # every metrics port; not the dashboard's page (it serves /metrics as well, and
        # scraping both would count the one process twice)
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert ports - {"http"} <= scraped
    assert "http" in {p["name"] for p in rendered.named(
        "Service", "plant-millstream-dashboard")["spec"]["ports"]}
    assert "http" not in scraped
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not render(PROFILES["defaults"]).of_kind("ServiceMonitor")


def test_helm_test_hook_waits_for_a_stage_readiness(rendered: Rendered) -> None:
    (pod,) = rendered.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    script = pod["spec"]["containers"][0]["args"][0]
    compile(script, "readyz-test", "exec")  # the check is valid Python
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]}
                for s in rendered.of_kind("Service")}
    url = next(line for line in script.splitlines() if "url = " in line).split('"')[1]
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    assert url.endswith("/readyz") and int(port) in services[host]
