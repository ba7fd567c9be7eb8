"""``millstream browse opcua URL``: walk a server and write an editable catalog to start from.

The walk (:mod:`connectors.opcua_discover`) pages with continuation points and shows
progress on stderr; the proposal (:mod:`connectors.opcua_catalog`) is checked with
:func:`schemas.catalog.load_catalog` before it is written, so what lands in ``--out``
always loads.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from millstream.settings import Settings

if TYPE_CHECKING:
    from millstream.commands import Add

__all__ = ["cmd_browse", "register"]

logger = logging.getLogger(__name__)


def register(add: Add) -> None:
    p = add("browse", cmd_browse,
            "walk a server's address space and write a catalog to start from")
    p.add_argument("protocol", choices=["opcua"], help="the server's protocol")
    p.add_argument("url", help="the server's endpoint, e.g. opc.tcp://plc1:4840/")
    p.add_argument("--out", help="write the catalog here (default: stdout)")
    p.add_argument("--root", help="start here instead of Objects: a node id "
                   "(ns=2;i=1000, nsu=URI;s=Line1) or a browse path from Objects (Plant/Line 1)")
    p.add_argument("--max-nodes", type=int, default=None,
                   help="stop after this many nodes (the catalog says it is partial)")
    p.add_argument("--enterprise", default="enterprise")
    p.add_argument("--site", default="site")
    p.add_argument("--source-name", help="the source's name (default: from the host)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--policy", default="None", choices=[
        "None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"],
        help="security policy (the server's certificate must be trusted: millstream trust)")
    p.add_argument("--mode", default=None, choices=["None", "Sign", "SignAndEncrypt"],
                   help="security mode (default: SignAndEncrypt with a policy, else None)")
    p.add_argument("--username", help="user name for a server that needs one")
    p.add_argument("--password-env", help="environment variable holding the password")


def cmd_browse(args: argparse.Namespace, settings: Settings) -> int:
    from connectors.opcua_browse import Progress
    from connectors.opcua_discover import browse_opcua, catalog_text
    from schemas.catalog import Catalog
    from schemas.exceptions import MillstreamError
    from schemas.opcua import OpcUaSecurity
    from schemas.opcua_pki import default_pki_dir

    if not args.verbose:  # asyncua logs every request at INFO
        logging.getLogger("asyncua").setLevel(logging.WARNING)
    try:
        security = OpcUaSecurity(
            policy=args.policy,
            mode=args.mode or ("None" if args.policy == "None" else "SignAndEncrypt"),
            username=args.username, password_env=args.password_env)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise MillstreamError(f"browse security options: {problems}") from exc
    walk = asyncio.run(browse_opcua(args.url, root=args.root, max_nodes=args.max_nodes,
                                    timeout=args.timeout, progress=Progress(sys.stderr),
                                    security=security,
                                    pki_dir=default_pki_dir(settings.data_dir)))
    text = catalog_text(walk, args.url, source=args.source_name, enterprise=args.enterprise,
                        site=args.site, max_nodes=args.max_nodes, security=security)
    # never write a catalog that does not load (libyaml: 100,000 tags in seconds, not 20 s)
    Catalog.model_validate(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    machines = len({v.holder_id for v in walk.variables})
    print(f"millstream: {walk.visited} nodes, {len(walk.variables)} variables in {machines} "
          f"machines, {walk.seconds:.1f} s" + (f"; wrote {args.out}" if args.out else ""),
          file=sys.stderr)
    if walk.errors:
        print(f"millstream: {walk.errors} node(s) could not be browsed; see the log above",
              file=sys.stderr)
    return 0
