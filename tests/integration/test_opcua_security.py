"""OPC-UA security against real asyncua servers in-process: every policy and mode, user
authentication (password, X.509), pinning of the server's certificate, expiry, and the
connector and executor going through the same path.

The servers run in one background event loop for the whole module (two servers: one
with a valid certificate, one with an expired one); each test connects with its own
``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.hazmat.primitives import serialization

from connectors.opcua import OpcUaSource
from millstream.cli import main
from millstream.stack.kafka import free_port
from schemas.catalog import Catalog, SourceSpec, load_catalog
from schemas.exceptions import OpcUaSecurityError
from schemas.opcua import OpcUaSecurity
from schemas.opcua_client import POLICIES, connect_client
from schemas.opcua_pki import Pki, default_pki_dir
from sinks.devices import DeviceError, OpcUaWriter
from tests.support.certs import CertFiles, make_cert
from tests.unit.test_connectors_base import MemoryPublisher

pytestmark = pytest.mark.integration

T = TypeVar("T")
USER = "operator"
PASSWORD = "Pa55-never-in-a-log-7f3a"  # the secret the tests hunt for
PASSWORD_ENV = "MILLSTREAM_TEST_OPCUA_PASSWORD"
PLANT_URI = "urn:millstream:plant"
CNC_SP = "acme/plant1/machining/line1/cnc-01/spindle_speed_sp"
ALL_SECURED = [
    ua.SecurityPolicyType.Basic256Sha256_Sign, ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
    ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_Sign,
    ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
]


class Users:
    """asyncua user manager: one username/password and one X.509 user certificate."""

    def __init__(self, user_cert_der: bytes) -> None:
        self.user_cert_der = user_cert_der

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None:
            return User(role=UserRole.User, name=username) if (
                username == USER and password == PASSWORD) else None
        if certificate == self.user_cert_der:
            return User(role=UserRole.User, name="x509-user")
        return None


class Loop:
    """An event loop in a thread, for servers that outlive one test's asyncio.run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Plant:
    url: str
    expired_url: str
    server_cert: CertFiles
    expired_cert: CertFiles
    user_cert: CertFiles
    stranger_cert: CertFiles
    trusted_pki: Path  # has the valid and the expired server certificate pinned
    ns: int


async def start_server(url: str, cert: CertFiles, users: Users) -> tuple[Server, int]:
    server = Server(user_manager=users)  # type: ignore[arg-type]
    await server.init()
    server.set_endpoint(url)
    await server.set_application_uri("urn:millstream:test-server")
    await server.load_certificate(str(cert.cert_path))
    await server.load_private_key(str(cert.key_path))
    server.set_security_policy(ALL_SECURED)
    server.set_identity_tokens([ua.UserNameIdentityToken, ua.X509IdentityToken])
    ns = await server.register_namespace(PLANT_URI)
    node = await server.nodes.objects.add_variable(
        ua.NodeId(ua.String("cnc-01.spindle_speed_sp"), ua.Int16(ns)), "spindle_speed_sp", 8000.0)
    await node.set_writable()
    await server.start()
    return server, ns


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    certs = tmp_path_factory.mktemp("certs")
    server_cert = make_cert(certs, "server", uri="urn:millstream:test-server")
    expired = make_cert(certs, "expired", uri="urn:millstream:test-server",
                        valid_from_days=-60, valid_to_days=-1)
    user_cert = make_cert(certs, "user", uri="urn:millstream:user")
    stranger = make_cert(certs, "stranger", uri="urn:millstream:stranger")
    pki = tmp_path_factory.mktemp("pki")
    Pki(pki).pin(server_cert.cert)
    Pki(pki).pin(expired.cert)  # pinned, and still refused: it has expired
    users = Users(user_cert.der)
    url = f"opc.tcp://127.0.0.1:{free_port()}/secure/"
    expired_url = f"opc.tcp://127.0.0.1:{free_port()}/expired/"
    loop = Loop()
    servers: list[Server] = []
    try:
        server, ns = loop.run(start_server(url, server_cert, users))
        servers.append(server)
        servers.append(loop.run(start_server(expired_url, expired, users))[0])
        yield Plant(url, expired_url, server_cert, expired, user_cert, stranger, pki, ns)
    finally:
        for s in servers:
            loop.run(s.stop())
        loop.close()


def spec(url: str, **security: Any) -> SourceSpec:
    return SourceSpec(name="secure-plc", protocol="opcua", endpoint=url,
                      security=OpcUaSecurity(**security))


def read_sp(plant: Plant, source: SourceSpec, pki: Path | None) -> float:
    """Connect through connect_client and read the setpoint; checks the channel's policy."""
    async def go() -> float:
        client = await connect_client(source, source.endpoint, pki, timeout=5)
        try:
            policy = source.security.policy
            assert client.security_policy.URI == POLICIES[policy].URI
            assert client.security_policy.Mode.name == source.security.mode
            value = await client.get_node(f"ns={plant.ns};s=cnc-01.spindle_speed_sp").read_value()
            return float(value)
        finally:
            await client.disconnect()

    return asyncio.run(asyncio.wait_for(go(), 30))


def password_user() -> dict[str, Any]:
    return {"username": USER, "password_env": PASSWORD_ENV}


@pytest.mark.parametrize("mode", ["Sign", "SignAndEncrypt"])
@pytest.mark.parametrize("policy", list(POLICIES))
def test_each_policy_and_mode_connects_and_reads(plant: Plant, policy: str, mode: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    source = spec(plant.url, policy=policy, mode=mode, **password_user())
    assert read_sp(plant, source, plant.trusted_pki) == 8000.0


def test_client_certificate_made_once_then_reused_and_a_copied_pem_trusted(
        plant: Plant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    pki = tmp_path / "pki"
    (pki / "trusted").mkdir(parents=True)  # an admin copied the server's certificate, as PEM
    (pki / "trusted" / "plc-42.pem").write_bytes(
        plant.server_cert.cert.public_bytes(serialization.Encoding.PEM))
    source = spec(plant.url, policy="Basic256Sha256", mode="SignAndEncrypt", **password_user())
    assert read_sp(plant, source, pki) == 8000.0
    first = (pki / "own" / "cert.der").read_bytes()
    assert read_sp(plant, source, pki) == 8000.0
    assert (pki / "own" / "cert.der").read_bytes() == first


def test_wrong_password_refused_and_no_password_in_logs_or_errors(
        plant: Plant, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    source = spec(plant.url, policy="Basic256Sha256", mode="Sign", **password_user())
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD + "-wrong")
    with pytest.raises(OpcUaSecurityError) as refused:
        read_sp(plant, source, plant.trusted_pki)
    assert refused.value.reason == "access_denied"
    assert USER in str(refused.value) and PASSWORD_ENV in str(refused.value)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)  # and the right one, over an encrypted channel
    for mode in ("Sign", "SignAndEncrypt"):
        ok = spec(plant.url, policy="Aes256_Sha256_RsaPss", mode=mode, **password_user())
        assert read_sp(plant, ok, plant.trusted_pki) == 8000.0
    ours = [r for r in caplog.records if not r.name.startswith("asyncua.server")]
    assert any(r.name.startswith("asyncua.client") for r in ours)  # DEBUG was captured
    texts = [r.getMessage() for r in ours] + [str(refused.value), repr(refused.value)]
    assert not [t for t in texts if PASSWORD in t]


def test_password_from_file(plant: Plant, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    source = spec(plant.url, policy="Aes128_Sha256_RsaOaep", mode="SignAndEncrypt",
                  username=USER, password_file=secret)
    assert read_sp(plant, source, plant.trusted_pki) == 8000.0


def test_x509_user_accepted_and_unknown_user_certificate_refused(plant: Plant) -> None:
    user = spec(plant.url, policy="Basic256Sha256", mode="SignAndEncrypt",
                user_certificate=plant.user_cert.cert_path,
                user_private_key=plant.user_cert.key_path)
    assert read_sp(plant, user, plant.trusted_pki) == 8000.0
    stranger = spec(plant.url, policy="Basic256Sha256", mode="SignAndEncrypt",
                    user_certificate=plant.stranger_cert.cert_path,
                    user_private_key=plant.stranger_cert.key_path)
    with pytest.raises(OpcUaSecurityError) as refused:
        read_sp(plant, stranger, plant.trusted_pki)
    assert refused.value.reason == "access_denied"
    assert str(plant.stranger_cert.cert_path) in str(refused.value)


def test_untrusted_server_refused_with_the_way_to_trust_it(plant: Plant, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    source = spec(plant.url, policy="Basic256Sha256", mode="SignAndEncrypt", **password_user())
    with pytest.raises(OpcUaSecurityError) as refused:
        read_sp(plant, source, tmp_path / "pki")
    sha1 = hashlib.sha1(plant.server_cert.der).hexdigest().upper()
    sha256 = hashlib.sha256(plant.server_cert.der).hexdigest().upper()
    message = str(refused.value)
    assert refused.value.reason == "untrusted" and refused.value.thumbprint == sha1
    assert plant.url in message and sha1 in message and sha256 in message
    assert f"millstream trust opcua {plant.url}" in message
    assert str(tmp_path / "pki" / "trusted") in message


def test_trust_command_pins_the_certificate_then_the_connection_works(
        plant: Plant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: no question asked
    trusted = default_pki_dir(tmp_path) / "trusted"
    sha1 = hashlib.sha1(plant.server_cert.der).hexdigest().upper()

    assert main(["trust", "opcua", plant.url]) == 1
    out = capsys.readouterr()
    assert sha1 in out.out and "--yes" in out.err
    assert not trusted.exists() or not list(trusted.iterdir())

    assert main(["trust", "opcua", plant.url, "--yes"]) == 0
    out = capsys.readouterr()
    assert sha1 in out.out and hashlib.sha256(plant.server_cert.der).hexdigest().upper() in out.out
    assert "CN=server" in out.out and "pinned" in out.out
    assert (trusted / f"{sha1}.der").read_bytes() == plant.server_cert.der

    source = spec(plant.url, policy="Aes256_Sha256_RsaPss", mode="Sign", **password_user())
    assert read_sp(plant, source, default_pki_dir(tmp_path)) == 8000.0
    assert main(["trust", "opcua", plant.url, "--yes"]) == 0
    assert "already trusted" in capsys.readouterr().out

    # browse goes through the same secured session, and its catalog says how it connected
    user = password_user()
    out_file = tmp_path / "browsed.yaml"
    assert main(["browse", "opcua", plant.url, "--policy", "Aes256_Sha256_RsaPss", "--mode",
                 "Sign", "--username", user["username"], "--password-env", user["password_env"],
                 "--out", str(out_file)]) == 0
    browsed = load_catalog(out_file)
    assert browsed.sources[0].security.policy == "Aes256_Sha256_RsaPss"
    assert browsed.sources[0].security.password_env == PASSWORD_ENV
    assert PASSWORD not in out_file.read_text()


def test_expired_server_certificate_refused_even_when_pinned(
        plant: Plant, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    source = spec(plant.expired_url, policy="Basic256Sha256", mode="Sign", **password_user())
    with pytest.raises(OpcUaSecurityError) as refused:
        read_sp(plant, source, plant.trusted_pki)
    assert refused.value.reason == "expired" and "expired on" in str(refused.value)
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(tmp_path))  # trust refuses to pin it
    assert main(["trust", "opcua", plant.expired_url, "--yes"]) == 1
    assert "expired on" in capsys.readouterr().err
    assert not (default_pki_dir(tmp_path) / "trusted").exists()


def test_connector_says_untrusted_once_keeps_retrying_and_connects_once_trusted(
        plant: Plant, catalog: Catalog, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    source = catalog.source("opcua-sim").model_copy(update={"security": OpcUaSecurity(
        policy="Basic256Sha256", mode="SignAndEncrypt", user_certificate=plant.user_cert.cert_path,
        user_private_key=plant.user_cert.key_path)})
    pki = tmp_path / "pki"
    status_file = tmp_path / "status.json"
    opcua = OpcUaSource(catalog, source, MemoryPublisher(), endpoint=plant.url,
                        status_file=status_file, pki_dir=pki, timeout_s=5)
    seen: dict[str, Any] = {}

    async def go() -> dict[str, Any]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def trust() -> None:  # the admin pins the server while the connector retries
            seen.update(opcua.status())
            Pki(pki).pin(plant.server_cert.cert)

        loop.call_later(2.0, trust)
        loop.call_later(5.0, stop.set)
        return await opcua.serve(stop)

    final = asyncio.run(go())
    assert seen["errors"] >= 2 and not seen["connected"]  # retried, with backoff
    assert "millstream trust opcua" in seen["last_error"]
    loud = [r for r in caplog.records
            if r.name == "connectors.opcua" and "not trusted" in r.getMessage()]
    assert len(loud) == 1 and loud[0].levelno == logging.ERROR
    assert final["produced"] >= 1  # the setpoint's value arrived after the pinning
    assert "not trusted" not in (final["last_error"] or "")


def test_executor_writes_through_a_secured_session(plant: Plant, catalog: Catalog) -> None:
    source = catalog.source("opcua-sim").model_copy(update={"security": OpcUaSecurity(
        policy="Aes128_Sha256_RsaOaep", mode="SignAndEncrypt",
        user_certificate=plant.user_cert.cert_path, user_private_key=plant.user_cert.key_path)})

    async def go() -> None:
        writer = OpcUaWriter(catalog, source, plant.url, pki_dir=plant.trusted_pki)
        try:
            assert await writer.write_and_read_back(CNC_SP, 5000.0) == 5000.0
            assert await writer.write_and_read_back(CNC_SP, 8000.0) == 8000.0
        finally:
            await writer.close()
        no_pki = OpcUaWriter(catalog, source, plant.url)
        with pytest.raises(DeviceError, match="PKI folder"):
            await no_pki.write_and_read_back(CNC_SP, 5000.0)

    asyncio.run(asyncio.wait_for(go(), 30))
