"""``millstream trust opcua URL``: show an OPC-UA server's certificate and pin it.

The connector and the executor refuse a server whose certificate is not pinned in the PKI
folder (``<data_dir>/pki/opcua/trusted``). This asks the server for its endpoints without
security, prints each distinct certificate (subject, issuer, validity, SHA-1 and SHA-256
thumbprints) for a person to compare with the server's admin screen, and pins it: at once
with ``--yes``, after a y/N question on a terminal, never silently on a pipe.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import TYPE_CHECKING

from millstream.settings import Settings
from schemas.exceptions import MillstreamError

if TYPE_CHECKING:  # asyncua and cryptography load when the command runs: the CLI starts fast
    from asyncua import ua
    from cryptography import x509

    from millstream.commands import Add
    from schemas.opcua_pki import Pki

__all__ = ["cmd_trust", "register"]

logger = logging.getLogger(__name__)

TIMEOUT_S = 5.0


def register(add: Add) -> None:
    p = add("trust", cmd_trust, "show a server's certificate and trust it (pin it in the PKI)")
    protocols = p.add_subparsers(dest="protocol", required=True, metavar="PROTOCOL")
    o = protocols.add_parser("opcua", help="an OPC-UA server's certificate",
                             description="Fetch the OPC-UA server's endpoints without security, "
                             "print each certificate and pin it in <data_dir>/pki/opcua/trusted.")
    o.add_argument("url", nargs="?", help="opc.tcp://host:port/path (default: the --source's)")
    o.add_argument("--source", help="a catalog source: its endpoint, and a check that the "
                   "server offers its security policy and mode")
    o.add_argument("--yes", action="store_true", help="pin without asking")


def cmd_trust(args: argparse.Namespace, settings: Settings) -> int:
    """Print the server's certificates and pin the ones not trusted yet; 0 when all are."""
    from schemas.catalog import load_catalog
    from schemas.opcua_pki import Pki, default_pki_dir, thumbprint

    wanted: tuple[str, str] | None = None
    url = args.url
    if args.source:
        spec = load_catalog(settings.catalog).source(args.source)
        url = url or spec.endpoint
        if spec.security.policy != "None":
            wanted = (spec.security.policy, spec.security.mode)
    if not url:
        raise MillstreamError("millstream trust opcua: give the server's URL "
                              "(opc.tcp://host:port/path) or --source NAME")
    offered = asyncio.run(_fetch(url))
    pki = Pki(default_pki_dir(settings.data_dir))
    certs: dict[str, tuple[x509.Certificate, list[str]]] = {}
    for ep, cert in offered:
        if cert is not None:
            certs.setdefault(thumbprint(cert), (cert, []))[1].append(
                f"{ep.SecurityPolicyUri.rpartition('#')[2]}/{ep.SecurityMode.name}")
    if not certs:
        raise MillstreamError(f"OPC-UA server {url} offers no certificate (security None only); "
                              "there is nothing to trust")
    if wanted is not None:
        _check_offered(url, args.source, wanted, offered)
    refused = 0
    for cert, policies in certs.values():
        if not _judge(url, pki, cert, policies, assume_yes=args.yes):
            refused += 1
    return 1 if refused else 0


async def _fetch(url: str) -> list[tuple[ua.EndpointDescription, x509.Certificate | None]]:
    from asyncua import Client, ua

    from schemas.opcua_client import server_certificates

    try:
        return await server_certificates(Client(url, timeout=TIMEOUT_S))
    except (OSError, TimeoutError, ua.UaError) as exc:
        raise MillstreamError(f"cannot get the endpoints of OPC-UA server {url}: {exc!r}; "
                              "check the URL and that the server is running") from exc


def _check_offered(url: str, source: str, wanted: tuple[str, str],
                   offered: list[tuple[ua.EndpointDescription, x509.Certificate | None]]) -> None:
    from schemas.opcua_client import POLICIES

    policy, mode = wanted
    if not any(ep.SecurityPolicyUri == POLICIES[policy].URI and ep.SecurityMode.name == mode
               for ep, _ in offered):
        print(f"warning: source {source!r} wants {policy}/{mode}, which {url} does not offer; "
              "change the source's security", file=sys.stderr)


def _judge(url: str, pki: Pki, cert: x509.Certificate, policies: list[str], *,
           assume_yes: bool) -> bool:
    """Show one certificate and pin it if allowed; False when it stays untrusted."""
    from schemas.opcua_pki import CertificateInfo, validity_problem

    info = CertificateInfo.of(cert)
    print(f"OPC-UA server {url} certificate (for {', '.join(sorted(set(policies)))}):")
    for line in info.lines():
        print(f"  {line}")
    if pki.is_trusted(cert):
        print(f"  already trusted ({pki.trusted_dir})")
        return True
    problem = validity_problem(cert)
    if problem is not None:
        print(f"  not pinned: the certificate is {problem}; millstream refuses it even when "
              "pinned. Ask the server's administrator for a valid one.", file=sys.stderr)
        return False
    if not assume_yes:
        if not sys.stdin.isatty():
            print("  not pinned: not asking on a non-terminal; compare the thumbprint with the "
                  "server's and pass --yes to pin it", file=sys.stderr)
            return False
        answer = input(f"Trust this certificate (SHA-1 {info.sha1})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("  not pinned", file=sys.stderr)
            return False
    path = pki.pin(cert)
    print(f"  pinned: {path}")
    logger.info("pinned the certificate of %s (SHA-1 %s) at %s", url, info.sha1, path)
    return True
