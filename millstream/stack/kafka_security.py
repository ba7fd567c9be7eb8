"""SASL_SSL for the embedded Kafka broker: TLS on every listener, SCRAM-SHA-512 users.

The client listener speaks SASL_SSL: TLS with the certificate of :mod:`kafka_pki`, then a
SCRAM-SHA-512 login. The users are created when the data directory is formatted
(``kafka-storage format --add-scram``), from a salted password computed here, so no
password is ever on a command line. The broker logs in to itself as
:data:`BROKER_USER` with a random password kept in the data directory (mode 0600).
The KRaft controller listener is TLS with client certificates required: only the broker,
which holds the broker certificate, gets in.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import SecretStr

from millstream.exceptions import StackError
from millstream.settings import Settings
from millstream.stack.kafka_pki import BrokerPki, ensure_broker_pki

__all__ = [
    "BROKER_USER",
    "MECHANISM",
    "KafkaSecurity",
    "broker_password",
    "embedded_security",
    "scram_argument",
]

MECHANISM = "SCRAM-SHA-512"
BROKER_USER = "millstream-broker"
ITERATIONS = 8192


def scram_argument(user: str, password: str, iterations: int = ITERATIONS,
                   salt: bytes | None = None) -> str:
    """The ``--add-scram`` value for ``user``: the salted password, not the password."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return (f"{MECHANISM}=[name={user},iterations={iterations},"
            f'salt="{base64.b64encode(salt).decode()}",'
            f'saltedpassword="{base64.b64encode(salted).decode()}"]')


def broker_password(data_dir: Path) -> str:
    """The broker's own SCRAM password, made once per data directory (file mode 0600)."""
    path = data_dir / "broker-scram.secret"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password)
    return password


def _jaas(user: str, password: str) -> str:
    return (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="{user}" password="{password}";')


@dataclass(frozen=True)
class KafkaSecurity:
    """What the embedded broker needs to speak SASL_SSL: its users and where its
    certificates live (made there when missing)."""

    users: Mapping[str, SecretStr]
    pki_dir: Path

    def __post_init__(self) -> None:
        for user in self.users:
            if not user or any(c in user for c in ',=[]"\\ ') or user == BROKER_USER:
                raise ValueError(f"SCRAM user name {user!r} is not usable: give a name without "
                                 f"spaces, commas, '=', brackets or quotes (and not "
                                 f"{BROKER_USER!r}, the broker's own)")

    @cached_property
    def pki(self) -> BrokerPki:
        return ensure_broker_pki(self.pki_dir)

    def format_args(self, data_dir: Path) -> list[str]:
        """The ``--add-scram`` arguments of ``kafka-storage format``."""
        args = ["--add-scram", scram_argument(BROKER_USER, broker_password(data_dir))]
        for user, password in self.users.items():
            args += ["--add-scram", scram_argument(user, password.get_secret_value())]
        return args

    def listener_properties(self, data_dir: Path, port: int, controller_port: int) -> list[str]:
        """server.properties lines for the listeners (replacing the PLAINTEXT ones)."""
        pki = self.pki
        return [
            f"listeners=SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config="
            + _jaas(BROKER_USER, broker_password(data_dir)),
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={pki.keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={pki.ca_cert}",
            "listener.name.controller.ssl.client.auth=required",
        ]


def embedded_security(settings: Settings) -> KafkaSecurity | None:
    """What the embedded broker must speak for these settings: None for PLAINTEXT, else
    SASL_SSL with the configured user (the only other protocol it offers)."""
    protocol = (settings.kafka_security_protocol or "PLAINTEXT").upper()
    if protocol == "PLAINTEXT":
        return None
    mechanism = (settings.kafka_sasl_mechanism or MECHANISM).upper()
    if protocol != "SASL_SSL" or mechanism != MECHANISM:
        raise StackError(
            f"the embedded Kafka broker speaks PLAINTEXT or SASL_SSL with {MECHANISM}, not "
            f"{protocol} with {mechanism}: set MILLSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL and "
            f"MILLSTREAM_KAFKA_SASL_MECHANISM={MECHANISM}, or MILLSTREAM_KAFKA_BOOTSTRAP for "
            "a cluster of your own")
    user, password = settings.kafka_sasl_username, settings.kafka_sasl_password
    if not user or password is None or not password.get_secret_value():
        raise StackError(
            "the embedded Kafka broker with SASL_SSL needs the user it creates: set "
            "MILLSTREAM_KAFKA_SASL_USERNAME and MILLSTREAM_KAFKA_SASL_PASSWORD")
    try:
        return KafkaSecurity({user: password}, settings.embedded_kafka_pki_dir)
    except ValueError as exc:
        raise StackError(f"{exc} (MILLSTREAM_KAFKA_SASL_USERNAME)") from exc
