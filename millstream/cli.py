"""The ``millstream`` command: one subcommand per stage, plus the local stack tools."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from millstream.settings import Settings, load_settings
from schemas.exceptions import MillstreamError

__all__ = ["main"]


def _cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.stack.kafka import fetch_kafka

    if settings.kafka_bootstrap:
        print(f"millstream: using Kafka at {settings.kafka_bootstrap}; nothing to fetch",
              file=sys.stderr)
        return 0
    libs = fetch_kafka(settings.cache_dir, settings.kafka_version)
    print(f"millstream: Apache Kafka {settings.kafka_version} ready in {libs}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="millstream", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup", help="fetch what the local stack needs (Kafka jars), once")
    p.set_defaults(func=_cmd_setup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    func: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        return func(args, load_settings())
    except MillstreamError as exc:
        print(f"millstream: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
