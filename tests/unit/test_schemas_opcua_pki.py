"""The PKI folder and credentials, without a server: thumbprints, pinning, validity, the
client's own certificate, and where passwords come from."""

from __future__ import annotations

import hashlib
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from schemas.exceptions import OpcUaSecurityError
from schemas.opcua import OpcUaSecurity
from schemas.opcua_client import check_server_certificate, read_credentials
from schemas.opcua_pki import (
    CertificateInfo,
    Pki,
    application_uri_of,
    load_certificate,
    thumbprint,
    validity_problem,
)
from tests.support.certs import CertFiles, make_cert


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    return make_cert(tmp_path_factory.mktemp("certs"), "plc", uri="urn:plc:one")


def test_thumbprints_are_the_hashes_of_the_der_bytes(server: CertFiles) -> None:
    assert thumbprint(server.cert) == hashlib.sha1(server.der).hexdigest().upper()
    assert thumbprint(server.der, "sha256") == hashlib.sha256(server.der).hexdigest().upper()
    info = CertificateInfo.of(server.cert)
    assert (info.sha1, info.application_uri, info.subject) == (
        thumbprint(server.cert), "urn:plc:one", "CN=plc")
    assert any(info.sha256 in line for line in info.lines())


def test_pin_names_the_file_by_thumbprint_and_trusts_copies_by_content(
        server: CertFiles, tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    assert not pki.is_trusted(server.cert)  # no trusted folder yet
    path = pki.pin(server.cert)
    assert path == tmp_path / "trusted" / f"{thumbprint(server.cert)}.der"
    assert load_certificate(path) == server.cert and pki.is_trusted(server.cert)
    other = make_cert(tmp_path / "x", "other", uri="urn:plc:two")
    assert not pki.is_trusted(other.cert)
    (pki.trusted_dir / "copied-by-hand.pem").write_bytes(
        other.cert.public_bytes(serialization.Encoding.PEM))
    (pki.trusted_dir / "notes.txt").write_text("not a certificate")  # ignored, with a warning
    assert pki.is_trusted(other.cert)
    assert set(pki.trusted()) == {thumbprint(server.cert), thumbprint(other.cert)}


def test_validity_problem_names_expired_and_not_yet_valid(tmp_path: Path) -> None:
    expired = make_cert(tmp_path, "old", uri="urn:x", valid_from_days=-10, valid_to_days=-2)
    future = make_cert(tmp_path, "new", uri="urn:x", valid_from_days=2, valid_to_days=10)
    current = make_cert(tmp_path, "now", uri="urn:x")
    assert (validity_problem(expired.cert) or "").startswith("expired on")
    assert (validity_problem(future.cert) or "").startswith("not valid before")
    assert validity_problem(current.cert) is None
    later = datetime.now(UTC) + timedelta(days=40)
    assert validity_problem(current.cert, later) is not None
    pki = Pki(tmp_path / "pki")
    pki.pin(expired.cert)
    with pytest.raises(OpcUaSecurityError) as err:  # pinned is not enough
        check_server_certificate(expired.cert, "opc.tcp://plc:4840", pki)
    assert err.value.reason == "expired" and err.value.thumbprint == thumbprint(expired.cert)
    with pytest.raises(OpcUaSecurityError) as untrusted:
        check_server_certificate(current.cert, "opc.tcp://plc:4840", pki)
    assert "millstream trust opcua opc.tcp://plc:4840" in str(untrusted.value)
    assert str(pki.trusted_dir) in str(untrusted.value)
    pki.pin(current.cert)
    check_server_certificate(current.cert, "opc.tcp://plc:4840", pki)


def test_own_certificate_is_made_once_with_its_uri_and_a_private_key(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    own = pki.client_certificate()
    cert = load_certificate(own.cert_path)
    assert application_uri_of(cert) == own.application_uri
    assert own.application_uri.startswith("urn:") and validity_problem(cert) is None
    assert stat.S_IMODE(own.key_path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(own.key_path.read_bytes(), None)
    pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*pem) == cert.public_key().public_bytes(*pem)
    again = Pki(tmp_path).client_certificate()
    assert again == own and load_certificate(again.cert_path) == cert


def test_credentials_from_env_and_file_and_errors_without_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hunter2-but-longer"
    monkeypatch.setenv("PLC_USER", "alice")
    monkeypatch.setenv("PLC_PASS", secret)
    sec = OpcUaSecurity(username_env="PLC_USER", password_env="PLC_PASS")
    assert read_credentials(sec, "plc", "opc.tcp://plc") == ("alice", secret)
    file = tmp_path / "pw"
    file.write_text(secret + "\r\n")
    sec = OpcUaSecurity(username="bob", password_file=file)
    assert read_credentials(sec, "plc", "opc.tcp://plc") == ("bob", secret)
    file.write_text(" spaced \n\n")  # only the one trailing newline goes
    assert read_credentials(sec, "plc", "opc.tcp://plc") == ("bob", " spaced \n")

    monkeypatch.delenv("PLC_PASS")
    with pytest.raises(OpcUaSecurityError, match="PLC_PASS") as missing:
        read_credentials(OpcUaSecurity(username="a", password_env="PLC_PASS"), "plc", "e")
    assert missing.value.reason == "credentials"
    gone = tmp_path / "nope"
    with pytest.raises(OpcUaSecurityError) as unreadable:
        read_credentials(OpcUaSecurity(username="a", password_file=gone), "plc", "e")
    assert str(gone) in str(unreadable.value)
    file.write_bytes(b"\xff\xfe" + secret.encode())
    with pytest.raises(OpcUaSecurityError) as bad:
        read_credentials(OpcUaSecurity(username="a", password_file=file), "plc", "e")
    assert secret not in str(bad.value) and bad.value.__cause__ is None
