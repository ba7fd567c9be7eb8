"""``millstream command``: operators send, approve and stop commands, and read the audit.

``send MACHINE/SETPOINT VALUE --reason`` signs a command as this operator
(``MILLSTREAM_COMMAND_SIGNER``, default the login name) and waits for the executor's
verdict; ``approve ID`` is a second operator's signed approval (two-person setpoints);
``kill-switch on|off [--machine M]`` stops every command (or one machine's) within a
second; ``audit [--since 1h]`` prints the executor's decisions; ``keygen`` makes a key.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING

from millstream.settings import Settings
from schemas.exceptions import MillstreamError

if TYPE_CHECKING:
    from millstream.commands import Add
    from schemas.control import AuditRecord

__all__ = ["register"]

logger = logging.getLogger(__name__)

_FINAL = {"applied", "failed", "rejected", "dry-run"}


def register(add: Add) -> None:
    p = add("command", _no_action, "send, approve and stop setpoint commands; read the audit")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = sub.add_parser("send", help="send a signed setpoint command and wait for its verdict")
    s.add_argument("target", metavar="MACHINE/SETPOINT")
    s.add_argument("value", type=float)
    s.add_argument("--reason", required=True, help="why (kept in the audit)")
    s.add_argument("--ttl", type=float, default=60.0, help="seconds before it expires")
    s.add_argument("--dry-run", action="store_true", help="check everything, write nothing")
    s.add_argument("--wait", type=float, default=15.0, help="seconds to wait for a verdict")
    s.set_defaults(func=cmd_send)
    a = sub.add_parser("approve", help="approve a two-person command (not your own)")
    a.add_argument("command_id", metavar="ID")
    a.add_argument("--reason", default="approved")
    a.add_argument("--wait", type=float, default=15.0)
    a.set_defaults(func=cmd_approve)
    k = sub.add_parser("kill-switch", help="stop (on) or release (off) every command")
    k.add_argument("state", choices=["on", "off"])
    k.add_argument("--machine", help="only this machine (name or ISA-95 path)")
    k.add_argument("--reason", default="operator")
    k.set_defaults(func=cmd_kill_switch)
    u = sub.add_parser("audit", help="print the executor's decisions as JSON lines")
    u.add_argument("--since", default="24h", help="e.g. 30m, 2h, 7d (default 24h)")
    u.set_defaults(func=cmd_audit)
    g = sub.add_parser("keygen", help="make a signing key <data_dir>/keys/SIGNER.key and "
                       "trust its public key")
    g.add_argument("signer")
    g.set_defaults(func=cmd_keygen)


def _no_action(args: argparse.Namespace, settings: Settings) -> int:
    return 2


def _signer_and_topics(settings: Settings) -> tuple[object, object, str]:
    from millstream.keys import load_signer
    from millstream.stack.locate import resolve_bootstrap
    from schemas.topics import Topics

    return (load_signer(settings, getpass.getuser()), Topics(settings.topic_prefix),
            resolve_bootstrap(settings))


def _produce(settings: Settings, bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         **settings.kafka_client_config()})
    producer.produce(topic, key=key, value=value)
    if producer.flush(10) != 0:
        raise MillstreamError(f"Kafka at {bootstrap} did not acknowledge the message to "
                              f"{topic}; check that it is up")


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.catalog import load_catalog
    from schemas.events import Command, now_ms
    from schemas.signing import Signer
    from schemas.topics import Topics

    catalog = load_catalog(settings.catalog)
    info = catalog.info(args.target)
    signer, topics, bootstrap = _signer_and_topics(settings)
    assert isinstance(signer, Signer) and isinstance(topics, Topics)
    now = now_ms()
    command = Command(
        command_id=uuid.uuid4().hex, rule="manual", machine=catalog.machine_path(info.machine),
        setpoint=info.path, value=args.value, reason=args.reason, issued_at=now,
        expires_at=now + int(args.ttl * 1000), dry_run=args.dry_run or None,
    ).signed_by(signer)
    _produce(settings, bootstrap, topics.commands, command.key(), command.encode())
    print(f"millstream: sent command {command.command_id} ({info.path}={args.value:g}) as "
          f"{signer.signer_id}", file=sys.stderr)
    return _report(settings, bootstrap, topics.command_audit, command.command_id, args.wait,
                   final_only=False)


def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.control import ControlKind, ControlRecord
    from schemas.events import now_ms
    from schemas.signing import Signer
    from schemas.topics import Topics

    signer, topics, bootstrap = _signer_and_topics(settings)
    assert isinstance(signer, Signer) and isinstance(topics, Topics)
    record = ControlRecord(ControlKind.APPROVAL.value, args.command_id, True, args.reason,
                           now_ms()).signed_by(signer)
    _produce(settings, bootstrap, topics.control, record.key(), record.encode())
    print(f"millstream: {signer.signer_id} approved {args.command_id}", file=sys.stderr)
    return _report(settings, bootstrap, topics.command_audit, args.command_id, args.wait,
                   final_only=True)


def cmd_kill_switch(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.catalog import load_catalog
    from schemas.control import GLOBAL, ControlKind, ControlRecord
    from schemas.events import now_ms
    from schemas.signing import Signer
    from schemas.topics import Topics

    target = GLOBAL
    if args.machine:
        catalog = load_catalog(settings.catalog)
        found = [catalog.machine_path(m) for m in catalog.machines
                 if args.machine in (m.name, catalog.machine_path(m))]
        if not found:
            raise MillstreamError(f"machine {args.machine!r} is not in the catalog (have: "
                                  f"{', '.join(m.name for m in catalog.machines)})")
        target = found[0]
    signer, topics, bootstrap = _signer_and_topics(settings)
    assert isinstance(signer, Signer) and isinstance(topics, Topics)
    record = ControlRecord(ControlKind.KILL_SWITCH.value, target, args.state == "on",
                           args.reason, now_ms()).signed_by(signer)
    _produce(settings, bootstrap, topics.control, record.key(), record.encode())
    print(json.dumps({"kill_switch": target, "on": args.state == "on",
                      "by": signer.signer_id}), flush=True)
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.stack.locate import resolve_bootstrap
    from schemas.events import now_ms
    from schemas.topics import Topics

    since = now_ms() - _duration_ms(args.since)
    topic = Topics(settings.topic_prefix).command_audit
    for record in _audit_records(settings, resolve_bootstrap(settings), topic, since, 0.0):
        print(record.encode().decode(), flush=True)
    return 0


def cmd_keygen(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.signing import generate_key

    priv, pub = generate_key(args.signer, settings.keys_dir, settings.trusted_keys_dir)
    print(json.dumps({"private_key": str(priv), "public_key": str(pub)}), flush=True)
    return 0


def _duration_ms(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if m is None:
        raise MillstreamError(f"--since {text!r}: give a duration such as 30m, 2h or 7d")
    return int(float(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]] * 1000)


def _report(settings: Settings, bootstrap: str, topic: str, command_id: str, wait_s: float,
            *, final_only: bool) -> int:
    """Print the command's audit records until a verdict; 0 applied/dry-run/pending."""
    since = int(time.time() * 1000) - 60_000
    for record in _audit_records(settings, bootstrap, topic, since, wait_s, command_id,
                                 final_only):
        print(record.encode().decode(), flush=True)
        return 0 if record.verdict in ("applied", "dry-run", "pending") else 1
    print(f"millstream: no verdict for {command_id} within {wait_s:g} s; is the executor "
          "running? (`millstream command audit` shows it later)", file=sys.stderr)
    return 3


def _audit_records(settings: Settings, bootstrap: str, topic: str, since_ms: int,
                   follow_s: float, command_id: str | None = None,
                   final_only: bool = False) -> list[AuditRecord]:
    """Audit records from ``since_ms`` on: the ones there now, or (``follow_s`` > 0) the
    first of ``command_id`` (with a final verdict, if ``final_only``) within ``follow_s``."""
    from confluent_kafka import Consumer, TopicPartition

    from schemas.control import AuditRecord
    from schemas.exceptions import ContractError

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False, **settings.kafka_client_config()})
    out: list[AuditRecord] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, since_ms) for p in meta.partitions]
        starts = consumer.offsets_for_times(parts, timeout=10)
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        consumer.assign(starts)
        deadline = time.monotonic() + follow_s
        pos = {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition]
               for tp in starts}
        while time.monotonic() < deadline or (follow_s == 0 and any(
                pos[p] < ends[p] for p in ends)):
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None:
                continue
            pos[msg.partition() or 0] = (msg.offset() or 0) + 1
            try:
                record = AuditRecord.decode(msg.value())
            except ContractError:
                continue
            if command_id is None:
                out.append(record)
            elif record.command_id == command_id and (
                    not final_only or record.verdict in _FINAL):
                return [record]
    finally:
        consumer.close()
    return out
