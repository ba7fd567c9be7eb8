"""TLS material for the embedded Kafka broker: a CA and a broker certificate, as PEM files.

Layout under ``folder`` (``<data_dir>/pki/kafka`` for the local stack)::

    ca.crt       the CA certificate: clients trust it (MILLSTREAM_KAFKA_SSL_CA_LOCATION)
    broker.pem   the broker's private key and certificate chain, Kafka's PEM keystore
                 (ssl.keystore.type=PEM), file mode 0600

The CA's private key is used once and never written. The broker certificate names
127.0.0.1 and localhost, and serves as client certificate for the controller listener too.
Made with ``cryptography``: no keytool, no openssl command.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from millstream.exceptions import StackError

__all__ = ["BrokerPki", "ensure_broker_pki", "make_broker_pki"]

logger = logging.getLogger(__name__)

VALID_DAYS = 365
RENEW_DAYS = 7  # a certificate this close to its end is made again
HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class BrokerPki:
    """Where the CA certificate and the broker's PEM keystore are."""

    ca_cert: Path
    keystore: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "millstream local stack"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def make_broker_pki(folder: Path, hosts: tuple[str, ...] = HOSTS,
                    days: int = VALID_DAYS) -> BrokerPki:
    """A new CA and a broker certificate it signs for ``hosts``, written to ``folder``."""
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=5), now + timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("millstream local Kafka CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=False, content_commitment=False, key_encipherment=False,
              data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
              encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    pki = BrokerPki(folder / "ca.crt", folder / "broker.pem")
    pem = serialization.Encoding.PEM
    keystore = (key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
                + cert.public_bytes(pem) + ca.public_bytes(pem))
    tmp = pki.keystore.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(keystore)
    tmp.replace(pki.keystore)
    pki.ca_cert.write_bytes(ca.public_bytes(pem))
    logger.info("made a CA and a broker certificate for %s in %s", ", ".join(hosts), folder)
    return pki


def _still_good(pki: BrokerPki, hosts: tuple[str, ...]) -> bool:
    try:
        certs = x509.load_pem_x509_certificates(pki.keystore.read_bytes())
        ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    except (OSError, ValueError):
        return False
    leaf = certs[0]
    if leaf.issuer != ca.subject:
        return False
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    if set(san) != set(_san(hosts)):
        return False
    renew = datetime.now(UTC) + timedelta(days=RENEW_DAYS)
    return min(leaf.not_valid_after_utc, ca.not_valid_after_utc) > renew


def ensure_broker_pki(folder: Path, hosts: tuple[str, ...] = HOSTS) -> BrokerPki:
    """The CA and broker certificate in ``folder``, made again when missing, for other
    hosts, or within :data:`RENEW_DAYS` of their end."""
    pki = BrokerPki(folder / "ca.crt", folder / "broker.pem")
    if _still_good(pki, hosts):
        return pki
    try:
        return make_broker_pki(folder, hosts)
    except OSError as exc:
        raise StackError(f"cannot write the embedded Kafka broker's certificates to {folder}: "
                         f"{exc}; check that MILLSTREAM_DATA_DIR is writable") from exc
