"""``python -m connectors.simulator``: serve the simulated plant until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from urllib.parse import urlsplit

from connectors.simulator.faults import FaultPlan
from connectors.simulator.server import run_simulator
from connectors.simulator.sparkplug_side import catalog_broker
from schemas.catalog import Catalog, load_catalog
from schemas.exceptions import MillstreamError


def _catalog_port(catalog: Catalog, protocol: str, fallback: int) -> int:
    """The port the catalog's first source of ``protocol`` names, so connectors find us."""
    for s in catalog.sources:
        if s.protocol == protocol:
            url = s.endpoint if "://" in s.endpoint else f"tcp://{s.endpoint}"
            return urlsplit(url).port or fallback
    return fallback


async def _serve(args: argparse.Namespace) -> None:
    catalog = load_catalog(args.catalog)
    plan = FaultPlan([]) if args.no_faults else (
        FaultPlan.parse(args.fault, catalog) if args.fault else None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await run_simulator(
        catalog,
        opcua_port=args.opcua_port or _catalog_port(catalog, "opcua", 4840),
        modbus_port=args.modbus_port or _catalog_port(catalog, "modbus", 5020),
        seed=args.seed,
        faults=plan,
        stop=stop,
        mqtt_broker=args.mqtt_broker or catalog_broker(catalog),
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m connectors.simulator", description=__doc__)
    p.add_argument("--catalog", help="plant catalog YAML (default: the shipped plant)")
    p.add_argument("--opcua-port", type=int, default=0, help="default: the catalog's endpoint")
    p.add_argument("--modbus-port", type=int, default=0, help="default: the catalog's endpoint")
    p.add_argument("--mqtt-broker", metavar="HOST:PORT",
                   help="where the Sparkplug B edge node publishes (default: the catalog's)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--fault", action="append", default=[],
                   help="kind@machine[/tag]:start_s[+duration_s], repeatable "
                        "(default: a random plan from the seed)")
    p.add_argument("--no-faults", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("asyncua", "pymodbus"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        asyncio.run(_serve(args))
    except MillstreamError as exc:
        raise SystemExit(f"millstream simulator: {exc}") from exc


if __name__ == "__main__":
    main()
