"""Connect an asyncua client the way a source's ``security`` says: policy, mode, the
server's pinned certificate, and the user's identity.

Shared by the connector and the executor so both refuse the same servers. With policy
None the client connects as before (anonymous, or username/password). Otherwise the
client's own certificate comes from the PKI folder (:mod:`schemas.opcua_pki`), the
server's certificate is read from its endpoints and must be valid and pinned, and the
secure channel is opened with it. Passwords come from an environment variable or a file
and appear in no log line and no error message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.client import ua_client
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509

from schemas.catalog import SourceSpec
from schemas.exceptions import OpcUaSecurityError
from schemas.opcua import OpcUaSecurity
from schemas.opcua_pki import Pki, application_uri_of, load_certificate, thumbprint, to_der
from schemas.opcua_pki import validity_problem as _validity_problem

__all__ = [
    "POLICIES",
    "check_server_certificate",
    "connect_client",
    "read_credentials",
    "server_certificates",
]

logger = logging.getLogger(__name__)

POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {"Sign": ua.MessageSecurityMode.Sign,
          "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt}
_REFUSED_USER = {ua.StatusCodes.BadUserAccessDenied, ua.StatusCodes.BadIdentityTokenInvalid,
                 ua.StatusCodes.BadIdentityTokenRejected}
_REFUSED_CLIENT = {ua.StatusCodes.BadSecurityChecksFailed, ua.StatusCodes.BadCertificateUntrusted,
                   ua.StatusCodes.BadCertificateInvalid, ua.StatusCodes.BadCertificateUriInvalid,
                   ua.StatusCodes.BadCertificateTimeInvalid,
                   ua.StatusCodes.BadCertificateRevocationUnknown}

OnLost = Callable[[Exception], Coroutine[Any, Any, None]]


class _HideIdentityToken(logging.Filter):
    """asyncua logs each request at DEBUG; an ActivateSession request holds the user's
    password (in clear inside an encrypted channel): log its name only."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if any(isinstance(a, ua.ActivateSessionRequest) for a in args):
            record.msg, record.args = "Sending: ActivateSessionRequest (identity hidden)", ()
        return True


logging.getLogger(f"{ua_client.__name__}.UASocketProtocol").addFilter(_HideIdentityToken())


def read_credentials(sec: OpcUaSecurity, source: str,
                     endpoint: str) -> tuple[str | None, str | None]:
    """(username, password) from the catalog, the environment and files; errors name the
    variable or file, never a value."""
    username = sec.username
    if sec.username_env:
        username = _env(sec.username_env, source, endpoint, "username")
    password: str | None = None
    if sec.password_env:
        password = _env(sec.password_env, source, endpoint, "password")
    elif sec.password_file:
        try:
            text = sec.password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise OpcUaSecurityError(
                endpoint, "credentials",
                f"source {source!r}: cannot read the password file {sec.password_file} "
                f"({type(exc).__name__}: {getattr(exc, 'strerror', None) or 'not UTF-8'}); "
                "create it, readable by millstream, or set password_env"
            ) from None  # the cause may quote bytes of the password
        password = text.removesuffix("\n").removesuffix("\r")
    return username, password


def _env(name: str, source: str, endpoint: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise OpcUaSecurityError(
            endpoint, "credentials",
            f"source {source!r}: the {what} comes from the environment variable {name}, "
            "which is not set (or empty); set it in the connector's environment")
    return value


async def server_certificates(client: Client) -> list[tuple[ua.EndpointDescription,
                                                            x509.Certificate | None]]:
    """Every endpoint the server offers, with its certificate (GetEndpoints without
    security: the certificate is what we are about to judge)."""
    endpoints = await client.connect_and_get_server_endpoints()
    return [(ep, uacrypto.x509_from_der(ep.ServerCertificate) if ep.ServerCertificate else None)
            for ep in endpoints]


SESSION_TIMEOUT_MS = 60_000


async def connect_client(source: SourceSpec, endpoint: str, pki_dir: Path | None, *,
                         timeout: float, on_lost: OnLost | None = None,
                         watchdog_s: float | None = None) -> Client:
    """A connected client for ``source`` at ``endpoint``, secured as its catalog says.

    ``pki_dir`` is the PKI folder; a source with a policy other than None needs one.

    Raises :class:`OpcUaSecurityError` when security refuses the connection (untrusted or
    expired server certificate, credentials refused or unreadable, policy not offered);
    network failures raise what asyncua raises (``OSError``, ``TimeoutError``, ``UaError``).
    """
    sec = source.security
    username, password = read_credentials(sec, source.name, endpoint)
    client = (Client(endpoint, timeout=timeout) if watchdog_s is None
              else Client(endpoint, timeout=timeout, watchdog_intervall=watchdog_s))
    # a session dropped without closing (network loss) keeps its subscriptions queueing on
    # the server until it times out: ask for one minute, not asyncua's hour
    client.session_timeout = SESSION_TIMEOUT_MS
    client.connection_lost_callback = on_lost
    if sec.policy != "None":
        if pki_dir is None:
            raise OpcUaSecurityError(
                endpoint, "config", f"source {source.name!r} uses security policy {sec.policy} "
                "but no PKI folder was given for the certificates; `millstream connect` and "
                "`millstream executor` use <data_dir>/pki/opcua")
        await _secure(client, sec, endpoint, Pki(pki_dir))
    if username is not None:
        client.set_user(username)
    if password is not None:
        client.set_password(password)
    if sec.user_certificate is not None and sec.user_private_key is not None:
        await _load_user_certificate(client, sec, source.name, endpoint)
    try:
        await client.connect()  # cleans up after itself when it fails
    except ua.UaStatusCodeError as exc:
        refused = _refusal(exc, endpoint, sec, username)
        if refused is None:
            raise
        raise refused from exc
    return client


async def _secure(client: Client, sec: OpcUaSecurity, endpoint: str, pki: Pki) -> None:
    """Pick the endpoint of the configured policy and mode, judge its certificate, and set
    the client's security with it."""
    policy, mode = POLICIES[sec.policy], _MODES[sec.mode]
    if sec.certificate is not None and sec.private_key is not None:
        cert_path, key_path = sec.certificate, sec.private_key
        uri = application_uri_of(_load(cert_path, endpoint, "client certificate"))
        if uri is None:
            raise OpcUaSecurityError(endpoint, "config", f"client certificate {cert_path} has no "
                                     "application URI in its SubjectAltName; OPC UA needs one")
    else:
        own = pki.client_certificate()
        cert_path, key_path, uri = own.cert_path, own.key_path, own.application_uri
    client.application_uri = uri
    offered = await server_certificates(client)
    match = [(ep, cert) for ep, cert in offered
             if ep.SecurityPolicyUri == policy.URI and ep.SecurityMode == mode]
    if not match:
        have = sorted({f"{ep.SecurityPolicyUri.rpartition('#')[2]}/{ep.SecurityMode.name}"
                       for ep, _ in offered})
        raise OpcUaSecurityError(
            endpoint, "policy", f"OPC-UA server {endpoint} offers no endpoint with policy "
            f"{sec.policy} and mode {sec.mode} (it offers: {', '.join(have)}); set the "
            "source's security to one of these")
    server_cert = match[0][1]
    if server_cert is None:
        raise OpcUaSecurityError(endpoint, "untrusted", f"OPC-UA server {endpoint} sent no "
                                 f"certificate for {sec.policy}/{sec.mode}; it cannot be trusted")
    check_server_certificate(server_cert, endpoint, pki)
    await client.set_security(policy, str(cert_path), str(key_path),
                              server_certificate=to_der(server_cert), mode=mode)


def check_server_certificate(cert: x509.Certificate, endpoint: str, pki: Pki) -> None:
    """Refuse an expired, not yet valid or unpinned server certificate, saying what to do."""
    sha1 = thumbprint(cert)
    problem = _validity_problem(cert)
    if problem is not None:
        raise OpcUaSecurityError(
            endpoint, "expired", f"OPC-UA server {endpoint}: its certificate (SHA-1 {sha1}) is "
            f"{problem}; ask the server's administrator for a valid certificate, then trust it "
            f"with `millstream trust opcua {endpoint}`", thumbprint=sha1)
    if not pki.is_trusted(cert):
        raise OpcUaSecurityError(
            endpoint, "untrusted", f"OPC-UA server {endpoint} presents a certificate that is "
            f"not trusted: SHA-1 {sha1}, SHA-256 {thumbprint(cert, 'sha256')} "
            f"({cert.subject.rfc4514_string()}); run `millstream trust opcua {endpoint}` to "
            f"pin it, or copy the server's certificate into {pki.trusted_dir}/",
            thumbprint=sha1)


def _load(path: Path, endpoint: str, what: str) -> x509.Certificate:
    try:
        return load_certificate(path)
    except (OSError, ValueError) as exc:
        raise OpcUaSecurityError(endpoint, "config", f"cannot read the {what} {path}: {exc}; "
                                 "give a DER or PEM certificate file") from exc


async def _load_user_certificate(client: Client, sec: OpcUaSecurity, source: str,
                                 endpoint: str) -> None:
    assert sec.user_certificate is not None and sec.user_private_key is not None
    cert = _load(sec.user_certificate, endpoint, "user certificate")
    client.user_certificate = cert
    try:
        data = sec.user_private_key.read_bytes()
    except OSError as exc:
        raise OpcUaSecurityError(endpoint, "credentials", f"source {source!r}: cannot read the "
                                 f"user private key {sec.user_private_key} ({exc.strerror})"
                                 ) from exc
    pem = data.lstrip().startswith(b"-----BEGIN")
    try:
        await client.load_private_key(data, extension="pem" if pem else "der")  # type: ignore[arg-type]
    except (ValueError, TypeError):  # no chaining: a parser's message may quote key bytes
        raise OpcUaSecurityError(endpoint, "credentials", f"source {source!r}: the user private "
                                 f"key {sec.user_private_key} is not an unencrypted DER or PEM "
                                 "key") from None


def _refusal(exc: ua.UaStatusCodeError, endpoint: str, sec: OpcUaSecurity,
             username: str | None) -> OpcUaSecurityError | None:
    """A security refusal from the server as an error a person can act on; None for other
    status codes (the caller retries them as outages)."""
    name = type(exc).__name__
    if exc.code in _REFUSED_USER:
        if sec.user_certificate is not None:
            who = f"the user certificate {sec.user_certificate}"
        elif username is not None:
            where = (f"${sec.password_env}" if sec.password_env else str(sec.password_file))
            who = f"user {username!r} (password from {where})"
        else:
            who = "an anonymous user"
        return OpcUaSecurityError(endpoint, "access_denied", f"OPC-UA server {endpoint} refused "
                                  f"{who} ({name}); check the credentials the source uses")
    if exc.code in _REFUSED_CLIENT:
        return OpcUaSecurityError(
            endpoint, "client_rejected", f"OPC-UA server {endpoint} refused millstream's client "
            f"certificate ({name}); trust it on the server (the certificate is in "
            f"{sec.certificate or 'the PKI folder under own/cert.der'})")
    return None
