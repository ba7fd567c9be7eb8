"""What the chart hands the stages is what millstream reads: the catalog ConfigMap loads
with millstream's own catalog loader, the environment becomes the expected Settings, and
NOTES.txt says where the probes point."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from millstream.settings import Settings
from schemas.catalog import load_catalog
from tests.helm import chart
from tests.helm.chart import CHART, PROFILES, Rendered, containers, helm, render


def _write_catalog(rendered: Rendered, folder: Path) -> Path:
    """The catalog ConfigMap's files, laid out as the pod sees /etc/millstream/catalog."""
    data = rendered.named("ConfigMap", "plant-millstream-catalog")["data"]
    for name, text in data.items():
        (folder / name).write_text(text)
    env = rendered.named("ConfigMap", "plant-millstream-env")["data"]
    assert env["MILLSTREAM_CATALOG"] == "/etc/millstream/catalog/plant.yaml"
    return folder / "plant.yaml"


@pytest.mark.parametrize("profile", ["minimal-site", "multi-site-secure"])
def test_catalog_configmap_is_a_catalog_millstream_loads(profile: str, tmp_path: Path) -> None:
    rendered = render(PROFILES[profile])
    catalog = load_catalog(_write_catalog(rendered, tmp_path))
    connected = {c["args"][1] for d in rendered.workloads() for c in containers(d)
                 if c["args"][0] == "connect"}
    assert connected == {s.name for s in catalog.sources}
    if profile == "multi-site-secure":  # the register map CSV beside the catalog
        press = next(m for m in catalog.machines if m.name == "press-01")
        assert [t.name for t in press.tags] == ["oil_temp"]


def test_no_catalog_means_the_images_own_plant() -> None:
    rendered = render(PROFILES["defaults"])
    assert "plant-millstream-catalog" not in rendered.names("ConfigMap")
    assert "MILLSTREAM_CATALOG" not in rendered.named("ConfigMap", "plant-millstream-env")["data"]


def _stage_env(rendered: Rendered, workload: str) -> dict[str, str]:
    """The environment one stage's container gets, with secretKeyRefs resolved."""
    env: dict[str, str] = dict(rendered.named("ConfigMap", "plant-millstream-env")["data"])
    doc = next(d for d in rendered.workloads() if d["metadata"]["name"] == workload)
    (c,) = containers(doc)
    for item in c["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            secret = rendered.named("Secret", ref["name"])
            env[item["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


def test_environment_becomes_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = render(PROFILES["multi-site-secure"])
    for key in [k for k in os.environ if k.startswith("MILLSTREAM_")]:
        monkeypatch.delenv(key)
    for key, value in _stage_env(rendered, "plant-millstream-worker").items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.kafka_bootstrap == "kafka-0.kafka.data.svc:9093,kafka-1.kafka.data.svc:9093"
    assert settings.data_dir == Path("/var/lib/millstream")
    assert settings.catalog == Path("/etc/millstream/catalog/plant.yaml")
    assert settings.kafka_client_config() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "millstream", "sasl.password": "kafka-pw-Zq81-secret",
        "ssl.ca.location": "/etc/millstream/kafka-tls/ca.crt"}
    assert settings.command_signer == "streams"
    assert settings.command_signing_key_file == Path("/etc/millstream/signing/private.pem")


def _settings_names() -> set[str]:
    return {f"MILLSTREAM_{name.upper()}" for name in Settings.model_fields}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_millstream_variable_the_chart_sets_is_a_setting(profile: str) -> None:
    """A name the settings do not know is ignored silently (extra="ignore"): the chart
    would configure nothing."""
    rendered = render(PROFILES[profile])
    known = _settings_names()
    names = set(rendered.named("ConfigMap", "plant-millstream-env")["data"])
    for doc in rendered.workloads():
        for c in containers(doc):
            names |= {e["name"] for e in c.get("env", [])}
    unknown = {n for n in names if n.startswith("MILLSTREAM_")} - known
    assert not unknown, unknown


def test_executor_trusts_the_workers_and_the_operators_keys(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from schemas.signing import Signer, TrustedKeys, verify_doc

    keys = {who: Ed25519PrivateKey.generate() for who in ("workers", "alice")}
    pems = {who: k.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo
                                             ).decode() for who, k in keys.items()}
    values = tmp_path / "keys.yaml"
    values.write_text(yaml.safe_dump({"commandSigning": {
        "signer": "line-rules", "publicKey": pems["workers"],
        "operatorKeys": {"alice": pems["alice"]}}}))
    rendered = render(PROFILES["minimal-site"], values)
    for key in [k for k in os.environ if k.startswith("MILLSTREAM_")]:
        monkeypatch.delenv(key)
    for key, value in _stage_env(rendered, "plant-millstream-executor").items():
        monkeypatch.setenv(key, value)
    folder = Settings().trusted_keys_dir
    assert folder == Path("/etc/millstream/signing")
    # lay out the executor's signing volume as the pod sees it, and verify with it
    doc = rendered.named("Deployment", "plant-millstream-executor")
    (volume,) = [v for v in doc["spec"]["template"]["spec"]["volumes"] if v["name"] == "signing"]
    secret = rendered.named("Secret", volume["secret"]["secretName"])
    for item in volume["secret"]["items"]:
        (tmp_path / item["path"]).write_bytes(base64.b64decode(secret["data"][item["key"]]))
    assert sorted(p.name for p in tmp_path.glob("*.pub")) == ["alice.pub", "line-rules.pub"]
    trusted = TrustedKeys(tmp_path)
    for signer_id, who in (("line-rules", "workers"), ("alice", "alice")):
        doc_signed = Signer(signer_id, keys[who]).sign({"command_id": "c1"})
        assert verify_doc(doc_signed, trusted) is None
    worker_env = _stage_env(rendered, "plant-millstream-worker")
    assert worker_env["MILLSTREAM_COMMAND_SIGNER"] == "line-rules"


def test_sink_gets_the_clickhouse_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = render(PROFILES["minimal-site"])
    for key, value in _stage_env(rendered, "plant-millstream-sink").items():
        monkeypatch.setenv(key, value)
    assert Settings().dsn == "http://millstream:ch-pass-minimal-51@clickhouse.data.svc:8123/plant"


def _notes(tmp_path: Path, *values: Path) -> str:
    """NOTES.txt rendered offline: `helm install --dry-run` wants a cluster, so a copy of
    the chart carries NOTES.txt inside a ConfigMap template that `helm template` prints."""
    chart = tmp_path / "millstream"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "notes-preview.yaml").write_text(
        '{{- define "notes-preview" }}' + notes + "{{- end }}\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ include "notes-preview" . | quote }}}\n')
    files = [arg for path in values for arg in ("-f", str(path))]
    result = helm("template", "plant", str(chart), *files,
                  "--show-only", "templates/notes-preview.yaml")
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = yaml.safe_load(result.stdout)
    return str(doc["data"]["notes"])


def test_notes_say_where_the_probes_point(tmp_path: Path) -> None:
    notes = _notes(tmp_path, PROFILES["minimal-site"])
    assert "/healthz" in notes and "/readyz" in notes and "9464" in notes
    assert "helm test plant" in notes
    assert "plant-millstream-connect-line3-plc" in notes
    assert "opcua.pki.own is not set" in notes  # a connector without its own certificate
    secure = _notes(tmp_path / "secure", PROFILES["multi-site-secure"])
    assert "opcua.pki.own is not set" not in secure
    assert "kafka-pw-Zq81-secret" not in secure


def test_strimzi_user_secret_gives_the_password_and_values_the_user() -> None:
    rendered = render(PROFILES["multi-site-secure"],
                      sets=("kafka.sasl.existingSecret=millstream-user", "kafka.sasl.password="))
    (worker,) = containers(rendered.named("Deployment", "plant-millstream-worker"))
    env = {e["name"]: e for e in worker["env"]}
    assert env["MILLSTREAM_KAFKA_SASL_USERNAME"]["value"] == "millstream"
    assert env["MILLSTREAM_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "millstream-user", "key": "password"}
    assert "plant-millstream-kafka-sasl" not in rendered.names("Secret")


def test_missing_helm_fails_and_points_at_make_test(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(chart, "ROOT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"run `make test` \(or `make tools`\)"):
        chart.helm_binary()


def test_readme_deploying_values_render(tmp_path: Path) -> None:
    readme = (chart.ROOT / "README.md").read_text()
    section = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    values = tmp_path / "plant-values.yaml"
    values.write_text(example)
    rendered = render(values)
    assert "plant-millstream-connect-press-gw" in rendered.names("Deployment")
    assert "plant-millstream-worker" in rendered.names("HorizontalPodAutoscaler")


def test_every_values_block_of_readme_deploying_renders(tmp_path: Path) -> None:
    """The README's chart values (the plant, Strimzi) render; its operator resources
    (Kafka, KafkaUser, ClickHouseInstallation) are at least YAML with a kind."""
    readme = (chart.ROOT / "README.md").read_text()
    section = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:]]
    values = [b for b in blocks if not b.startswith("apiVersion:")]
    assert len(values) >= 2 and len(blocks) > len(values)
    for i, block in enumerate(values):
        path = tmp_path / f"values-{i}.yaml"
        path.write_text(block)
        rendered = render(path)
        assert rendered.of_kind("Deployment"), block
    for block in blocks:
        if block.startswith("apiVersion:"):
            docs = list(yaml.safe_load_all(block))
            assert all(d["kind"] and d["metadata"]["name"] for d in docs)


def test_notes_say_how_to_reach_the_dashboard(tmp_path: Path) -> None:
    notes = _notes(tmp_path, PROFILES["minimal-site"])
    assert "kubectl -n default port-forward svc/plant-millstream-dashboard 8080:8080" in notes
    assert "http://127.0.0.1:8080/" in notes
    assert "through the Ingress" not in notes  # off by default
    secure = _notes(tmp_path / "secure", PROFILES["multi-site-secure"])
    assert "Ingress plant-millstream-dashboard (class traefik)" in secure
    assert "https://millstream.plant1.acme.example/" in secure
    assert "put authentication in front of it" in secure
    assert "can acknowledge and shelve alarms" in secure
    actions = tmp_path / "actions.yaml"
    actions.write_text("dashboard: {alarmActions: false}\n")
    without = _notes(tmp_path / "actions", PROFILES["multi-site-secure"], actions)
    assert "acknowledge" not in without
    live_only = tmp_path / "live-only.yaml"
    live_only.write_text("sink: {enabled: false}\nclickhouse: {dsn: ''}\n")
    assert "live data only, no history" in _notes(tmp_path / "live", live_only)
