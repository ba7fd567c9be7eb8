"""Invalid values are refused before anything reaches a cluster, with a message that names
the value and what is wrong: by values.schema.json, or by the chart's cross-checks."""

from __future__ import annotations

import pytest

from tests.helm.chart import CHART, PROFILES, helm

SCHEMA_ERRORS = [
    # (--set items, fragments the message must contain)
    (["workers.replicas=0"], ["/workers/replicas", "minimum: got 0, want 1"]),
    (["workers.kind=DaemonSet"], ["/workers/kind", "'Deployment', 'StatefulSet'"]),
    (["kafka.securityProtocol=TLS"], ["/kafka/securityProtocol", "'SASL_SSL'"]),
    (["kafka.bootstrap=kafka"], ["/kafka/bootstrap", "does not match pattern"]),
    (["clickhouse.dsn=chdb:///var/lib/millstream/chdb"], ["/clickhouse/dsn", "https?://"]),
    (["containerSecurityContext.readOnlyRootFilesystem=false"],
     ["/containerSecurityContext/readOnlyRootFilesystem", "value must be true"]),
    (["podSecurityContext.runAsNonRoot=false"], ["/podSecurityContext/runAsNonRoot"]),
    (["workers.resources.limits=null"], ["/workers/resources", "limits"]),
    (["connectors.sites[0].name=Plant_1", "connectors.sites[0].sources[0].name=plc"],
     ["/connectors/sites/0/name", "does not match pattern"]),
    (["connectors.sites[0].name=plant1", "connectors.sites[0].sources[0].name=plc",
      "connectors.sites[0].deviceNetworks[0].cidr=10.0.3.0"],
     ["/connectors/sites/0/deviceNetworks/0/cidr", "does not match pattern"]),
    (["settings.KAFKA_BOOTSTRAP=kafka:9092"], ["invalid propertyName 'KAFKA_BOOTSTRAP'"]),
    (["observability.port=70000"], ["/observability/port", "maximum"]),
    (["workerz.replicas=2"], ["additional properties 'workerz' not allowed"]),
    (["commandSigning.signer=line rules"], ["/commandSigning/signer", "does not match pattern"]),
    (["commandSigning.operatorKeys.alice=not a key"],
     ["/commandSigning/operatorKeys/alice", "does not match pattern"]),
]

TEMPLATE_ERRORS = [
    (["workers.replicas=5"],
     ["workers.replicas is 5 but kafka.partitions.readings is 3", "2 workers would sit idle"]),
    (["workers.autoscaling.enabled=true", "workers.autoscaling.maxReplicas=8"],
     ["workers.autoscaling.maxReplicas is 8 but kafka.partitions.readings is 3"]),
    (["sink.replicas=4"], ["sink.replicas is 4 but kafka.partitions.readings is 3"]),
    (["kafka.securityProtocol=SASL_SSL"],
     ["kafka.sasl.mechanism is empty", "SCRAM-SHA-512"]),
    (["kafka.securityProtocol=SASL_SSL", "kafka.sasl.mechanism=PLAIN"],
     ["no SASL credentials are given", "kafka.sasl.existingSecret"]),
    (["kafka.sasl.username=u", "kafka.sasl.password=p"],
     ["kafka.securityProtocol is \"\"", "SASL_SSL"]),
    (["settings.MILLSTREAM_KAFKA_SASL_PASSWORD=hunter2"],
     ["settings.MILLSTREAM_KAFKA_SASL_PASSWORD looks like a secret", "kafka.sasl.password"]),
    (["clickhouse.dsn="], ["neither clickhouse.dsn nor clickhouse.existingSecret"]),
    (["connectors.sites[0].name=plant1", "connectors.sites[0].sources[0].name=plc"],
     ["connectors.sites[plant1] has no deviceNetworks"]),
    (["opcua.pki.own.certificateDer=MIIB"], ["opcua.pki.own needs both"]),
]


def _template(sets: list[str]) -> str:
    args = ["template", "plant", str(CHART)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode != 0, f"helm accepted {sets}"
    return result.stderr


@pytest.mark.parametrize(("sets", "fragments"), SCHEMA_ERRORS,
                         ids=[s[0][0] for s in SCHEMA_ERRORS])
def test_schema_rejects_invalid_values(sets: list[str], fragments: list[str]) -> None:
    message = _template(sets)
    assert "don't meet the specifications of the schema" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


@pytest.mark.parametrize(("sets", "fragments"), TEMPLATE_ERRORS,
                         ids=[" ".join(s[0]) for s in TEMPLATE_ERRORS])
def test_chart_rejects_inconsistent_values(sets: list[str], fragments: list[str]) -> None:
    message = _template(sets)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_a_source_missing_from_the_catalog_is_named() -> None:
    message = _template_with_profile("minimal-site", ["connectors.sites[0].sources[0].name=line9"])
    assert 'source "line9" is not in the catalog (catalog.plant.sources: line3-plc)' in message


def test_a_source_listed_in_two_sites_is_refused() -> None:
    message = _template_with_profile("multi-site-secure",
                                     ["connectors.sites[1].sources[0].name=hall-a-plc"])
    assert 'source "hall-a-plc" is listed in sites "hall-a" and "hall-b"' in message


def test_lint_strict_reports_the_schema_error() -> None:
    result = helm("lint", "--strict", str(CHART), "--set", "workers.replicas=0")
    assert result.returncode != 0
    assert "/workers/replicas" in result.stdout + result.stderr


def _template_with_profile(profile: str, sets: list[str]) -> str:
    args = ["template", "plant", str(CHART), "-f", str(PROFILES[profile])]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode != 0, f"helm accepted {sets} over {profile}"
    return result.stderr
