"""The OPC-UA PKI folder: millstream's own client certificate and the pinned server ones.

Layout under ``pki_dir`` (``<data_dir>/pki/opcua`` by default)::

    own/cert.der         the client application certificate, generated on first use
    own/private_key.pem  its RSA key (file mode 0600)
    trusted/<SHA1>.der   pinned server certificates; any DER or PEM certificate copied
                         into trusted/ under any name is trusted as well

Certificates are named by their SHA-1 thumbprint, the OPC UA convention that servers'
admin screens show; SHA-256 is shown next to it. Pure file and crypto work, no network:
the connector, the executor and ``millstream trust`` share it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertificateInfo",
    "OwnCertificate",
    "Pki",
    "application_uri_of",
    "default_pki_dir",
    "load_certificate",
    "self_signed_certificate",
    "thumbprint",
    "to_der",
    "validity_problem",
]

logger = logging.getLogger(__name__)

CLIENT_CERT_DAYS = 5 * 365
KEY_BITS = 2048  # what every policy here accepts (Basic256Sha256 .. Aes256_Sha256_RsaPss)


def default_pki_dir(data_dir: Path) -> Path:
    """Where millstream keeps its OPC-UA certificates under a data directory."""
    return data_dir / "pki" / "opcua"


def to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def thumbprint(cert: x509.Certificate | bytes,
               algorithm: Literal["sha1", "sha256"] = "sha1") -> str:
    """The certificate's thumbprint: the hash of its DER bytes, upper-case hex."""
    der = cert if isinstance(cert, bytes) else to_der(cert)
    return hashlib.new(algorithm, der).hexdigest().upper()


def load_certificate(path: Path) -> x509.Certificate:
    """A DER or PEM certificate file (told apart by content, not by name)."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def application_uri_of(cert: x509.Certificate) -> str | None:
    """The first URI in the SubjectAltName: an OPC UA application's identity."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def validity_problem(cert: x509.Certificate, now: datetime | None = None) -> str | None:
    """Why the certificate is not valid at ``now`` (expired, not yet valid), or None."""
    now = now or datetime.now(UTC)
    if now > cert.not_valid_after_utc:
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    if now < cert.not_valid_before_utc:
        return (f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC "
                "(check both machines' clocks)")
    return None


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What a person checks before trusting a certificate."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    sha1: str
    sha256: str
    application_uri: str | None

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertificateInfo:
        return cls(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                   cert.not_valid_before_utc, cert.not_valid_after_utc,
                   thumbprint(cert, "sha1"), thumbprint(cert, "sha256"), application_uri_of(cert))

    def lines(self) -> list[str]:
        return [
            f"subject:         {self.subject}",
            f"issuer:          {self.issuer}",
            f"application URI: {self.application_uri or '(none)'}",
            f"valid:           {self.not_before:%Y-%m-%d %H:%M:%S} .. "
            f"{self.not_after:%Y-%m-%d %H:%M:%S} UTC",
            f"SHA-1:           {self.sha1}",
            f"SHA-256:         {self.sha256}",
        ]


def self_signed_certificate(
    key: rsa.RSAPrivateKey,
    *,
    application_uri: str,
    common_name: str,
    hostnames: list[str],
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """An OPC UA application instance certificate (OPC 10000-6 6.2.2), signed by its own
    key: the application URI and host names in the SubjectAltName, usable by a client and
    a server."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "millstream")])
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    alt += [x509.DNSName(h) for h in hostnames]
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=True, key_encipherment=True,
            data_encipherment=True, key_agreement=False, key_cert_sign=True, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH,
                                              ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True, slots=True)
class OwnCertificate:
    """The client's certificate and key files, and the application URI they carry."""

    cert_path: Path
    key_path: Path
    application_uri: str


class Pki:
    """One PKI folder (see the module docstring). Creates its subfolders on first write."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.own_dir = root / "own"
        self.trusted_dir = root / "trusted"

    def trusted(self) -> dict[str, Path]:
        """SHA-1 thumbprint -> file, for every readable certificate in trusted/."""
        found: dict[str, Path] = {}
        if not self.trusted_dir.is_dir():
            return found
        for path in sorted(self.trusted_dir.iterdir()):
            if not path.is_file():
                continue
            try:
                found[thumbprint(load_certificate(path))] = path
            except (OSError, ValueError) as exc:
                logger.warning("ignoring %s in the trusted folder: not a DER or PEM "
                               "certificate (%s)", path, exc)
        return found

    def is_trusted(self, cert: x509.Certificate) -> bool:
        return thumbprint(cert) in self.trusted()

    def pin(self, cert: x509.Certificate) -> Path:
        """Trust ``cert`` from now on: trusted/<SHA1>.der."""
        self.trusted_dir.mkdir(parents=True, exist_ok=True)
        path = self.trusted_dir / f"{thumbprint(cert)}.der"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(to_der(cert))
        tmp.replace(path)
        return path

    def client_certificate(self) -> OwnCertificate:
        """millstream's own certificate: generated on first use and reused afterwards;
        regenerated (with a warning: the servers must trust the new one) once expired."""
        cert_path = self.own_dir / "cert.der"
        key_path = self.own_dir / "private_key.pem"
        if cert_path.is_file() and key_path.is_file():
            cert = load_certificate(cert_path)
            uri = application_uri_of(cert)
            problem = validity_problem(cert)
            if problem is None and uri is not None:
                return OwnCertificate(cert_path, key_path, uri)
            logger.warning("millstream's OPC-UA client certificate %s is %s; generating a "
                           "new one, which each server must trust again", cert_path,
                           problem or "without an application URI")
        return self._generate(cert_path, key_path)

    def _generate(self, cert_path: Path, key_path: Path) -> OwnCertificate:
        host = socket.gethostname()
        uri = f"urn:{host}:millstream"
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
        now = datetime.now(UTC)
        cert = self_signed_certificate(
            key, application_uri=uri, common_name=f"millstream@{host}", hostnames=[host],
            not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=CLIENT_CERT_DAYS))
        self.own_dir.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        cert_path.write_bytes(to_der(cert))
        logger.info("generated millstream's OPC-UA client certificate %s (SHA-1 %s, "
                    "application URI %s); servers that check clients must trust it",
                    cert_path, thumbprint(cert), uri)
        return OwnCertificate(cert_path, key_path, uri)
