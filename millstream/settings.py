"""millstream's settings: environment variables ``MILLSTREAM_…`` and an optional YAML file.

The YAML file is named by ``MILLSTREAM_CONFIG``; its keys are the field names below
(Helm values map onto the same names). Environment variables win over the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

if TYPE_CHECKING:
    from schemas.health import HealthConfig

__all__ = ["Settings", "load_settings"]


def _xdg(var: str, fallback: str) -> Path:
    base = os.environ.get(var)
    return (Path(base) if base else Path.home() / fallback) / "millstream"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MILLSTREAM_", frozen=True, extra="ignore")

    # Kafka: an existing cluster, or (unset) the embedded single-node broker
    kafka_bootstrap: str | None = None
    kafka_security_protocol: str | None = None  # e.g. SASL_SSL
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # PEM of the CA that signed the brokers' certificates; unset: the system's CAs, or for
    # the embedded broker with TLS its own CA (<data_dir>/pki/kafka/ca.crt)
    kafka_ssl_ca_location: Path | None = None
    kafka_port: int | None = None  # embedded broker's port; unset: a free one
    kafka_version: str = "4.1.1"  # embedded broker's Apache Kafka version (Maven Central)

    topic_prefix: str = "millstream"  # topics are <prefix>.readings, <prefix>.aggregates, ...

    # ClickHouse: chdb://PATH (embedded) or http(s)://user:pass@host:port/db
    clickhouse_dsn: str | None = None  # unset: chdb://<data_dir>/chdb
    clickhouse_user: str | None = None  # a server's user (chDB has none)
    clickhouse_password: SecretStr | None = None
    clickhouse_secure: bool | None = None  # TLS; unset: from the DSN (https://)
    clickhouse_verify: bool = True  # check the server's certificate
    clickhouse_ca_cert: Path | None = None  # PEM of the CA that signed the server's certificate

    # retention in days per table family (0: keep forever); applied when the sink starts
    ttl_readings_days: int = Field(default=90, ge=0)
    ttl_aggregates_days: int = Field(default=365, ge=0)  # aggregates and anomalies
    ttl_rollups_days: int = Field(default=730, ge=0)  # readings_1m, readings_1h
    ttl_deadletter_days: int = Field(default=90, ge=0)
    ttl_gaps_days: int = Field(default=0, ge=0)

    # analysts' queries (millstream query, the sink's query server)
    query_max_execution_s: float = Field(default=60.0, gt=0)
    query_max_rows: int = Field(default=100_000, gt=0)

    # store-and-forward disk spool of each connector (connectors/spool.py)
    spool_enabled: bool = True
    spool_dir: Path | None = None  # unset: <data_dir>/spool; one folder per source in it
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 20)  # bound of one source's spool
    spool_segment_bytes: int = Field(default=16 << 20, ge=4096)  # segment files roll here
    spool_policy: Literal["drop-oldest", "block"] = "drop-oldest"  # when the spool is full
    spool_fsync_ms: int = Field(default=1000, ge=0)  # 0: fsync every frame
    # signed commands (schemas/signing.py): who this process signs as (unset: "streams" for
    # the worker, the login name for `millstream command`), its Ed25519 private key (a PEM
    # file, or base64 of the raw 32 bytes; unset: <data_dir>/keys/<signer>.key, created on
    # first use), and where the executor finds the trusted public keys (<signer>.pub)
    command_signer: str | None = None
    command_signing_key_file: Path | None = None
    command_signing_key: SecretStr | None = None
    command_trusted_keys_dir: Path | None = None  # unset: <data_dir>/keys/trusted
    # the executor: rate limits per minute, longest command TTL, dry run (write nothing)
    executor_max_rate_per_setpoint: int = Field(default=6, ge=1)
    executor_max_rate_per_machine: int = Field(default=20, ge=1)
    command_max_ttl_s: float = Field(default=3600.0, gt=0)
    executor_dry_run: bool = False

    # each stage process serves /healthz, /readyz and /metrics (schemas/health.py) on this
    # port; unset: no endpoints; 0: any free port (named in the status file's metrics_url)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # bind address; the Helm chart sets 0.0.0.0
    # the stream workers: processing guarantee (exactly_once: Kafka transactions), how often
    # each input partition's state is checkpointed to <prefix>.streams-state (0: memory
    # only, lost on a crash), and after how long a silent worker's partitions move
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    checkpoint_interval_s: float = Field(default=5.0, ge=0)
    worker_session_timeout_s: float = Field(default=30.0, ge=6)

    # `millstream dashboard`: where it serves the page (loopback unless configured: it has
    # no login; 0 any free port), whether it offers alarm ack/shelve (when the alarms stage
    # is there), and how far back it reads alarm episodes when it starts; behind a proxy
    # that ends TLS, trust its X-Forwarded-Proto/-Host for the same-origin check of writes
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = Field(default=8080, ge=0, le=65535)
    dashboard_alarm_actions: bool = True
    dashboard_trust_forwarded: bool = False
    dashboard_alarm_lookback_s: float = Field(default=7 * 24 * 3600.0, gt=0)

    catalog: Path | None = None  # plant catalog YAML; unset: the simulated plant
    data_dir: Path = Field(default_factory=lambda: _xdg("XDG_DATA_HOME", ".local/share"))
    cache_dir: Path = Field(default_factory=lambda: _xdg("XDG_CACHE_HOME", ".cache"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("MILLSTREAM_CONFIG")
        if config:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config))
        return tuple(sources)

    @property
    def chdb_path(self) -> Path:
        return self.data_dir / "chdb"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def trusted_keys_dir(self) -> Path:
        return self.command_trusted_keys_dir or self.keys_dir / "trusted"

    @property
    def dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.chdb_path}"

    def ttl_days(self) -> dict[str, int]:
        """Each table's TTL in days (0: keep forever), from the ``ttl_*_days`` settings."""
        return {
            "readings": self.ttl_readings_days, "aggregates": self.ttl_aggregates_days,
            "anomalies": self.ttl_aggregates_days, "readings_1m": self.ttl_rollups_days,
            "readings_1h": self.ttl_rollups_days, "deadletter": self.ttl_deadletter_days,
            "gaps": self.ttl_gaps_days,
        }

    def health(self) -> HealthConfig:
        """Where a stage serves its health and metrics endpoints."""
        from schemas.health import HealthConfig  # prometheus-client: only stages need it

        return HealthConfig(port=self.metrics_port, host=self.metrics_host)

    def spool_folder(self, source: str) -> Path:
        """Where the connector of ``source`` keeps its spool."""
        return (self.spool_dir or self.data_dir / "spool") / source

    @property
    def embedded_kafka_pki_dir(self) -> Path:
        """Where the embedded broker keeps its CA and certificate when it speaks TLS."""
        return self.data_dir / "pki" / "kafka"

    @property
    def kafka_mechanism(self) -> str | None:
        """The SASL mechanism: MILLSTREAM_KAFKA_SASL_MECHANISM, else for the embedded
        broker with SASL (no bootstrap set) the one it offers, SCRAM-SHA-512."""
        sasl = (self.kafka_security_protocol or "").upper().startswith("SASL")
        if self.kafka_sasl_mechanism or not sasl or self.kafka_bootstrap:
            return self.kafka_sasl_mechanism
        return "SCRAM-SHA-512"

    @property
    def kafka_ca(self) -> Path | None:
        """The CA file Kafka clients trust: MILLSTREAM_KAFKA_SSL_CA_LOCATION, else the
        embedded broker's own CA when the local stack speaks TLS (no bootstrap set)."""
        if self.kafka_ssl_ca_location is not None:
            return self.kafka_ssl_ca_location
        tls = "SSL" in (self.kafka_security_protocol or "").upper()
        if tls and not self.kafka_bootstrap:
            return self.embedded_kafka_pki_dir / "ca.crt"
        return None

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka-style security options (empty when plain). Holds the password:
        never log it."""
        conf: dict[str, str] = {}
        if self.kafka_security_protocol:
            conf["security.protocol"] = self.kafka_security_protocol
        if self.kafka_mechanism:
            conf["sasl.mechanism"] = self.kafka_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ca is not None:
            conf["ssl.ca.location"] = str(self.kafka_ca)
        return conf

    def kafka_env(self) -> dict[str, str]:
        """The MILLSTREAM_KAFKA_* security variables that give a child process these
        settings' Kafka login (the CA resolved to a file)."""
        values = {"SECURITY_PROTOCOL": self.kafka_security_protocol,
                  "SASL_MECHANISM": self.kafka_mechanism,
                  "SASL_USERNAME": self.kafka_sasl_username,
                  "SASL_PASSWORD": (self.kafka_sasl_password.get_secret_value()
                                    if self.kafka_sasl_password else None),
                  "SSL_CA_LOCATION": str(self.kafka_ca) if self.kafka_ca else None}
        return {f"MILLSTREAM_KAFKA_{k}": v for k, v in values.items() if v}


def load_settings() -> Settings:
    return Settings()
