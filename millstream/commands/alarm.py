"""``millstream alarm``: operators list, acknowledge, shelve and unshelve alarm episodes,
and mark one a false positive.

``list`` prints the newest record of each episode from the alarms topic. ``ack``,
``shelve ID --for 30m`` and ``unshelve`` publish an alarm action; ``false-positive``
publishes to the anomaly-feedback topic (the worker raises the thresholds of the
detectors and tags that drove the episode). Each is keyed by the catalog source of the
alarm's machine, so it reaches the worker that holds that machine's alarms; then the
command waits for the state change on the alarms topic and prints it (who: the operator,
``MILLSTREAM_COMMAND_SIGNER`` or the login name).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from millstream.settings import Settings
from schemas.exceptions import MillstreamError

if TYPE_CHECKING:
    from millstream.commands import Add
    from schemas.alarms import Alarm

__all__ = ["register"]


def register(add: Add) -> None:
    p = add("alarm", _no_action, "list, acknowledge and shelve alarms; mark false positives")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="the newest record of each alarm, as JSON lines")
    ls.add_argument("--since", default="24h", help="e.g. 30m, 2h, 7d (default 24h)")
    ls.add_argument("--all", action="store_true", help="closed ones too")
    ls.set_defaults(func=cmd_list)
    for name, text in (("ack", "acknowledge an alarm"),
                       ("shelve", "shelve an alarm for a while (--for)"),
                       ("unshelve", "unshelve an alarm"),
                       ("false-positive", "mark an alarm a false positive: its detectors "
                                          "learn not to raise it again")):
        a = sub.add_parser(name, help=text)
        a.add_argument("alarm_id", metavar="ID")
        a.add_argument("--note", default="", help="kept with the change (audit)")
        a.add_argument("--wait", type=float, default=15.0,
                       help="seconds to wait for the change on the alarms topic")
        a.add_argument("--since", default="7d", help="how far back to look for the alarm")
        if name == "shelve":
            a.add_argument("--for", dest="duration", required=True,
                           help="how long, e.g. 30m or 2h (at most the catalog's "
                                "alarms.shelve_max_s)")
        a.set_defaults(func=cmd_act, verb=name)


def _no_action(args: argparse.Namespace, settings: Settings) -> int:
    return 2


def _duration_ms(text: str) -> int:
    from millstream.commands.command import _duration_ms as parse

    return parse(text)


def _records(settings: Settings, bootstrap: str, topic: str, since_ms: int, follow_s: float,
             done: Callable[[Alarm], bool] | None = None) -> list[Alarm]:
    """Alarm records from ``since_ms`` on: all there now, or (``follow_s`` > 0) until one
    satisfies ``done`` (returned alone) or the time is up."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from schemas.alarms import Alarm
    from schemas.exceptions import ContractError

    # read_committed (the default) stops at a transaction still open (the worker under
    # exactly_once always has one), and commit markers take offsets no message has: so the
    # end of what can be read is the partition's EOF, not its high watermark
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         **settings.kafka_client_config()})
    out: list[Alarm] = []
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = [TopicPartition(topic, p, since_ms) for p in meta.partitions]
        starts = consumer.offsets_for_times(parts, timeout=10)
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        pos = {tp.partition: tp.offset if tp.offset >= 0 else ends[tp.partition]
               for tp in starts}
        consumer.assign(starts)
        deadline = time.monotonic() + follow_s
        at_end = {p for p in ends if pos[p] >= ends[p]}
        while time.monotonic() < deadline or (follow_s == 0 and len(at_end) < len(ends)):
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                continue
            pos[msg.partition() or 0] = (msg.offset() or 0) + 1
            try:
                record = Alarm.decode(msg.value())
            except ContractError:
                continue
            if done is not None and done(record):
                return [record]
            out.append(record)
    finally:
        consumer.close()
    return [] if done is not None else out


def _latest(records: list[Alarm]) -> dict[str, Alarm]:
    newest: dict[str, Alarm] = {}
    for r in records:
        if r.alarm_id not in newest or r.version >= newest[r.alarm_id].version:
            newest[r.alarm_id] = r
    return newest


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from millstream.stack.locate import resolve_bootstrap
    from schemas.events import now_ms
    from schemas.topics import Topics

    records = _records(settings, resolve_bootstrap(settings),
                       Topics(settings.topic_prefix).alarms,
                       now_ms() - _duration_ms(args.since), 0.0)
    for r in sorted(_latest(records).values(), key=lambda r: r.started_at):
        if args.all or r.state != "closed":
            print(r.encode().decode(), flush=True)
    return 0


def cmd_act(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka import Producer

    from millstream.stack.locate import resolve_bootstrap
    from schemas.alarms import AlarmAction, AnomalyFeedback
    from schemas.catalog import load_catalog
    from schemas.events import now_ms
    from schemas.topics import Topics

    topics = Topics(settings.topic_prefix)
    bootstrap = resolve_bootstrap(settings)
    now = now_ms()
    found = _latest(_records(settings, bootstrap, topics.alarms,
                             now - _duration_ms(args.since), 0.0)).get(args.alarm_id)
    if found is None:
        raise MillstreamError(
            f"alarm {args.alarm_id!r} is not on {topics.alarms} in the last {args.since}; "
            "`millstream alarm list --all` shows the alarms (or widen --since)")
    catalog = load_catalog(settings.catalog)
    source = next((m.source for m in catalog.machines
                   if catalog.machine_path(m) == found.asset), None)
    if source is None:
        raise MillstreamError(f"alarm {args.alarm_id} is on {found.asset}, which is not in "
                              "the catalog (MILLSTREAM_CATALOG); use the worker's catalog")
    actor = settings.command_signer or getpass.getuser()
    if args.verb == "false-positive":
        message: AlarmAction | AnomalyFeedback = AnomalyFeedback(
            uuid.uuid4().hex, args.alarm_id, found.asset, "false-positive", actor, args.note,
            now)
        topic, expect = topics.anomaly_feedback, "false-positive"
    else:
        shelve_s = _duration_ms(args.duration) / 1000 if args.verb == "shelve" else None
        message = AlarmAction(uuid.uuid4().hex, args.alarm_id, found.asset, args.verb, actor,
                              args.note, now, shelve_s)
        topic = topics.alarm_actions
        expect = {"ack": "acknowledged", "shelve": "shelved", "unshelve": "unshelved"}[args.verb]
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         **settings.kafka_client_config()})
    producer.produce(topic, key=source.encode(), value=message.encode())
    if producer.flush(10) != 0:
        raise MillstreamError(f"Kafka at {bootstrap} did not acknowledge the message to "
                              f"{topic}; check that it is up")
    print(f"millstream: {actor}: {args.verb} {args.alarm_id} ({found.asset}) sent",
          file=sys.stderr, flush=True)
    change = _records(settings, bootstrap, topics.alarms, now - 1000, args.wait,
                      lambda r: (r.alarm_id == args.alarm_id and r.action == expect
                                 and r.actor == actor and r.updated_at >= now))
    if not change:
        print(f"millstream: no change of {args.alarm_id} within {args.wait:g} s; is the worker "
              "running? A refused action is a dead letter: millstream query \"SELECT detail "
              "FROM deadletter WHERE reason LIKE '%refused'\"", file=sys.stderr)
        return 3
    print(json.dumps(change[0].to_dict()), flush=True)
    return 0
