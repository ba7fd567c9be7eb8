"""The embedded broker's TLS material and SCRAM users, the Kafka login settings every stage
reads, and the sentences a refused login or an untrusted certificate becomes. No network:
the broker itself is in tests/integration/test_secure_kafka.py."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import stat
from pathlib import Path

import pytest
from confluent_kafka import KafkaError
from cryptography import x509
from pydantic import SecretStr

from millstream.exceptions import StackError
from millstream.settings import Settings
from millstream.stack.kafka_pki import ensure_broker_pki, make_broker_pki
from millstream.stack.kafka_security import (
    BROKER_USER,
    KafkaSecurity,
    broker_password,
    embedded_security,
    scram_argument,
)
from schemas.kafka_errors import explain_kafka_error, is_config_error


def test_broker_certificate_is_signed_by_the_ca_and_names_loopback(tmp_path: Path) -> None:
    pki = make_broker_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    leaf, chain_ca = x509.load_pem_x509_certificates(pki.keystore.read_bytes())
    leaf.verify_directly_issued_by(ca)  # raises if not
    assert chain_ca == ca
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert b"PRIVATE KEY" in pki.keystore.read_bytes()
    assert b"PRIVATE KEY" not in pki.ca_cert.read_bytes()  # the CA's key is never written
    assert stat.S_IMODE(pki.keystore.stat().st_mode) == 0o600


def test_pki_is_reused_while_good_and_made_again_for_other_hosts(tmp_path: Path) -> None:
    first = ensure_broker_pki(tmp_path).ca_cert.read_bytes()
    assert ensure_broker_pki(tmp_path).ca_cert.read_bytes() == first
    assert ensure_broker_pki(tmp_path, ("127.0.0.1", "kafka.local")).ca_cert.read_bytes() != first
    (tmp_path / "broker.pem").write_text("garbage")
    ensure_broker_pki(tmp_path)
    assert x509.load_pem_x509_certificates((tmp_path / "broker.pem").read_bytes())


def test_scram_argument_carries_the_salted_password_not_the_password() -> None:
    salt = b"0123456789abcdef"
    arg = scram_argument("alice", "alice-secret", iterations=4096, salt=salt)
    salted = hashlib.pbkdf2_hmac("sha512", b"alice-secret", salt, 4096)  # RFC 5802 Hi()
    assert arg == ("SCRAM-SHA-512=[name=alice,iterations=4096,"
                   f'salt="{base64.b64encode(salt).decode()}",'
                   f'saltedpassword="{base64.b64encode(salted).decode()}"]')
    assert "alice-secret" not in scram_argument("alice", "alice-secret")


def test_broker_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = broker_password(tmp_path)
    assert broker_password(tmp_path) == first and len(first) >= 24
    assert stat.S_IMODE((tmp_path / "broker-scram.secret").stat().st_mode) == 0o600


def test_listeners_speak_sasl_ssl_and_the_controller_wants_client_certificates(
        tmp_path: Path) -> None:
    sec = KafkaSecurity({"millstream": SecretStr("pw-never-here")}, tmp_path / "pki")
    props = "\n".join(sec.listener_properties(tmp_path, 9093, 9094))
    assert "listeners=SASL_SSL://127.0.0.1:9093,CONTROLLER://127.0.0.1:9094" in props
    assert "PLAINTEXT" not in props
    assert "listener.name.controller.ssl.client.auth=required" in props
    assert "pw-never-here" not in props  # the users' passwords are only in the metadata log
    assert "pw-never-here" not in repr(sec)
    args = sec.format_args(tmp_path)
    assert [a for a in args if a.startswith("SCRAM")][1].startswith(
        "SCRAM-SHA-512=[name=millstream,")
    with pytest.raises(ValueError, match="not usable"):
        KafkaSecurity({"bad,name": SecretStr("x")}, tmp_path)
    with pytest.raises(ValueError, match="broker's own"):
        KafkaSecurity({BROKER_USER: SecretStr("x")}, tmp_path)


def test_embedded_broker_security_from_the_settings(tmp_path: Path) -> None:
    assert embedded_security(Settings(data_dir=tmp_path)) is None
    sec = embedded_security(Settings(
        data_dir=tmp_path, kafka_security_protocol="SASL_SSL", kafka_sasl_username="u",
        kafka_sasl_password=SecretStr("p")))
    assert sec is not None and list(sec.users) == ["u"]
    assert sec.pki_dir == tmp_path / "pki" / "kafka"
    with pytest.raises(StackError, match="MILLSTREAM_KAFKA_SASL_PASSWORD"):
        embedded_security(Settings(data_dir=tmp_path, kafka_security_protocol="SASL_SSL",
                                   kafka_sasl_username="u"))
    with pytest.raises(StackError, match="PLAINTEXT or SASL_SSL with SCRAM-SHA-512"):
        embedded_security(Settings(kafka_security_protocol="SASL_SSL",
                                   kafka_sasl_mechanism="PLAIN", kafka_sasl_username="u",
                                   kafka_sasl_password=SecretStr("p")))


def test_client_config_trusts_the_configured_ca_or_the_local_stacks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = Settings(data_dir=tmp_path, kafka_security_protocol="SASL_SSL")
    assert local.kafka_client_config()["ssl.ca.location"] == str(
        tmp_path / "pki" / "kafka" / "ca.crt")
    assert local.kafka_client_config()["sasl.mechanism"] == "SCRAM-SHA-512"  # what it offers
    cluster = Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SASL_SSL")
    assert "ssl.ca.location" not in cluster.kafka_client_config()  # the system's CAs
    assert "sasl.mechanism" not in cluster.kafka_client_config()  # the cluster's to say
    assert "ssl.ca.location" not in Settings(data_dir=tmp_path).kafka_client_config()
    given = Settings(data_dir=tmp_path, kafka_bootstrap="k:9093",
                     kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
                     kafka_sasl_username="u", kafka_sasl_password=SecretStr("p"),
                     kafka_ssl_ca_location=Path("/etc/kafka/ca.crt"))
    assert "'p'" not in repr(given)
    for key in [k for k in os.environ if k.startswith("MILLSTREAM_")]:
        monkeypatch.delenv(key)
    for key, value in given.kafka_env().items():  # what the demo hands its children
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MILLSTREAM_KAFKA_BOOTSTRAP", "k:9093")
    assert Settings().kafka_client_config() == given.kafka_client_config() == {
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u", "sasl.password": "p", "ssl.ca.location": "/etc/kafka/ca.crt"}


def test_refused_login_and_untrusted_certificate_say_what_to_fix() -> None:
    conf = {"sasl.username": "millstream", "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.password": "hunter2", "ssl.ca.location": "/etc/ca.pem"}
    auth = explain_kafka_error(KafkaError._AUTHENTICATION, "SASL authentication error: x",
                               "k:9093", conf)
    assert "refused the login of user 'millstream' (SCRAM-SHA-512)" in auth
    assert "MILLSTREAM_KAFKA_SASL_PASSWORD" in auth and "hunter2" not in auth
    tls = explain_kafka_error(None, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                              "failed", "k:9093", conf)
    assert "TLS handshake with Kafka at k:9093 failed" in tls and "/etc/ca.pem" in tls
    assert "MILLSTREAM_KAFKA_SSL_CA_LOCATION" in tls
    assert "system's CAs" in explain_kafka_error(KafkaError._SSL, "handshake", "k:9093")
    plain = explain_kafka_error(KafkaError._TRANSPORT, "Connection refused", "k:9093", conf)
    assert plain == "Kafka at k:9093: Connection refused"
    assert is_config_error(None, "[Error 58] SaslAuthenticationFailed: Authentication failed")
    assert not is_config_error(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")
