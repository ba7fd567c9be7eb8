"""The command executor: commands from Kafka, through every check, onto the machines.

For each message on ``<prefix>.commands``: decode it (malformed: dead-lettered), answer a
redelivery with its first result (a reused id with other content is a replay: refused),
check the signature and freshness (:mod:`sinks.authn`), the kill switch
(:mod:`sinks.killswitch`), the safety gateway (:mod:`sinks.safety`), park it for a second
operator if its setpoint needs one (:mod:`sinks.approvals`), read the current value for the
step and rate checks, then (unless dry-run) mark the write in flight, write, read back and
shake hands (:mod:`sinks.writes`). The first :class:`CommandResult` of a command goes to the
compacted ``command-results`` topic, reloaded on start, so nothing is applied twice, even
after a SIGKILL. Every decision goes to ``command-audit``. Offsets are committed last.

Lifecycle: :func:`run_executor` blocks until ``stop`` is set, writing its counters to
``status_file`` every second and once more when it stops, and returns them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from schemas.catalog import Catalog
from schemas.control import AuditRecord, ControlKind, ControlRecord, finite_or_none
from schemas.events import Command, CommandResult, CommandStatus, DeadLetter, now_ms
from schemas.exceptions import CatalogError, ContractError
from schemas.health import HealthConfig, KafkaProbe, StageHealth
from schemas.kafka_errors import KafkaErrorLog
from schemas.signing import TrustedKeys
from schemas.status import write_status
from schemas.topics import Topics
from sinks.approvals import Approvals, Decision
from sinks.authn import Authenticator
from sinks.base import consumer_lag
from sinks.control_reader import ControlReader, load_results
from sinks.devices import DeviceError, DevicePool
from sinks.killswitch import KillSwitches
from sinks.publisher import Publisher
from sinks.safety import SafetyGateway
from sinks.writes import matches, write_setpoint

__all__ = ["STAGE", "matches", "run_executor"]

logger = logging.getLogger(__name__)

STAGE = "executor"  # the stage name in dead-letter records
_POLL_S = 0.2
_STATUS_EVERY_S = 1.0
_REMEMBERED_RESULTS = 1_000_000  # results kept to answer a redelivered command identically


def run_executor(catalog: Catalog, *, bootstrap: str, topics: Topics, stop: threading.Event
                 | None = None, **options: Any) -> dict[str, Any]:
    """Execute commands until ``stop`` is set; returns the final counters. ``options`` are
    :class:`_Executor`'s keyword arguments."""
    executor = _Executor(catalog, bootstrap=bootstrap, topics=topics,
                         stop=stop or threading.Event(), **options)
    return asyncio.run(executor.run())


class _Executor:
    """``endpoints`` override the sources' endpoints; ``kafka_config`` adds librdkafka
    settings (TLS, SASL); ``trusted_keys_dir`` holds the signers' public keys;
    ``dry_run`` checks everything but writes nothing; ``pki_dir`` the OPC-UA certificates;
    ``health`` serves /healthz, /readyz (Kafka) and /metrics."""

    def __init__(
        self, catalog: Catalog, *, bootstrap: str, topics: Topics, stop: threading.Event,
        endpoints: dict[str, str] | None = None, group_id: str = "millstream-executor",
        kafka_config: dict[str, str] | None = None, status_file: Path | None = None,
        max_rate_per_setpoint: int = 6, max_rate_per_machine: int = 20, attempts: int = 3,
        trusted_keys_dir: Path | None = None, dry_run: bool = False,
        max_ttl_ms: int = 3_600_000, pki_dir: Path | None = None,
        health: HealthConfig | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts={attempts}: a command needs at least 1 write attempt")
        self.catalog, self.topics, self.stop = catalog, topics, stop
        self.status_file, self.attempts, self.dry_run = status_file, attempts, dry_run
        self.gateway = SafetyGateway(catalog, max_rate_per_setpoint=max_rate_per_setpoint,
                                     max_rate_per_machine=max_rate_per_machine)
        trusted = TrustedKeys(trusted_keys_dir)
        self.authn = Authenticator(trusted, max_ttl_ms=max_ttl_ms)
        self.switches, self.approvals = KillSwitches(), Approvals(trusted)
        self.devices = DevicePool(catalog, endpoints, pki_dir)
        self.bootstrap, self.conf = bootstrap, dict(kafka_config or {})
        self.control = ControlReader(bootstrap, topics.control, self.conf, trusted,
                                     self.switches, self.approvals)
        # the durable memory: every command's first result (reloaded from the topic)
        self._results: OrderedDict[str, CommandResult] = OrderedDict()
        self._last_write: dict[str, int] = {}  # setpoint path -> time of its last write
        self.counters = dict.fromkeys(("received", "applied", "rejected", "failed",
                                       "deadlettered", "dry-run", "pending"), 0)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group_id,
            "enable.auto.commit": False, "auto.offset.reset": "earliest", **self.conf,
            "error_cb": KafkaErrorLog(bootstrap, self.conf, logger),
        })
        self.out = Publisher({"bootstrap.servers": bootstrap, **self.conf}, stop)
        self.health = StageHealth("executor", health, kafka=KafkaProbe(bootstrap, self.conf),
                                  context={"topic": topics.commands})
        self.lag: int | None = None
        self.last_error: str | None = None

    # -- the loop ----------------------------------------------------------------------------
    def startup(self) -> None:
        """Reload the results and the control state before the first command."""
        for result in load_results(self.bootstrap, self.topics.command_results,
                                   self.conf).values():
            self._remember(result)
        self.control.start()

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        next_status = 0.0
        try:
            self.health.start()
            await loop.run_in_executor(None, self.startup)
            self.consumer.subscribe([self.topics.commands])
            logger.info("executor: consuming %s%s", self.topics.commands,
                        " (dry run: nothing is written)" if self.dry_run else "")
            while not self.stop.is_set():
                if not self.control.alive():
                    raise RuntimeError("the control topic reader stopped; see the log above")
                msg = await loop.run_in_executor(None, self.consumer.poll, _POLL_S)
                if msg is not None:
                    t0 = time.monotonic()
                    await self._on_message(msg)
                    self.health.observe_process(time.monotonic() - t0, self.topics.commands)
                for decision in self.approvals.decide(now_ms()):
                    await self._decided(decision)
                if time.monotonic() >= next_status:
                    self.lag = consumer_lag(self.consumer)
                    self._write_status()
                    next_status = time.monotonic() + _STATUS_EVERY_S
        finally:
            self.control.stop()
            await self.devices.close()
            self.consumer.close()
            self.out.close()
            self._write_status()
            self.health.stop()
        return self.status()

    async def _on_message(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            if err.code() != KafkaError._PARTITION_EOF:
                logger.warning("executor: consumer error on %s: %s", self.topics.commands, err)
            return
        self.counters["received"] += 1
        doc: dict[str, Any] | None = None
        try:
            doc = json.loads(msg.value() or b"")
            if not isinstance(doc, dict):
                raise ContractError("not-an-object", f"the message is a {type(doc).__name__}")
            command = Command.from_dict(doc)
        except (ValueError, UnicodeDecodeError) as exc:
            published = self._malformed(msg, None, "not-json", f"not valid JSON ({exc})")
        except ContractError as exc:
            published = self._malformed(msg, doc, exc.reason, exc.detail)
        except Exception as exc:  # e.g. RecursionError on deeply nested JSON: never crash
            published = self._malformed(msg, None, "decode-error", repr(exc)[:500])
        else:
            try:
                published = await self._decide(command, doc)
            except Exception as exc:  # a bug here must not stop the plant's other commands
                logger.exception("executor: command %s failed unexpectedly", command.command_id)
                published = self._finish(command, CommandStatus.FAILED, {"executor": "error"},
                                         f"executor error: {exc!r}; see the executor's log")
        if published:
            try:
                self.consumer.commit(message=msg, asynchronous=False)
            except KafkaException as exc:  # e.g. a rebalance: the next owner redelivers it
                logger.warning("executor: cannot commit %s[%s]@%s: %s; the command may be "
                               "redelivered (its result is published)", msg.topic(),
                               msg.partition(), msg.offset(), exc)

    # -- the checks --------------------------------------------------------------------------
    async def _decide(self, command: Command, doc: dict[str, Any]) -> bool:
        cid, now = command.command_id, now_ms()
        checks: dict[str, str] = {"schema": "ok"}
        prior = self._results.get(cid)
        if prior is not None:
            if prior.requested == finite_or_none(command.value) and prior.setpoint == \
                    self._path(command):
                logger.warning("command %s was redelivered; publishing its result again (%s)",
                               cid, prior.status)
                return self.out.publish(self.topics.command_results, prior.key(),
                                        prior.encode())
            checks["replay"] = "refused"
            return self._refuse_unrecorded(command, checks, (
                f"replay: command id {cid} was already used for {prior.setpoint}="
                f"{prior.requested:g} ({prior.status}); this one asks {command.setpoint}="
                f"{command.value:g}; an issuer must use a new id for every command"))
        checks["replay"] = "ok"
        verdict = self.authn.check(doc, command, now)
        if not verdict.allowed:
            checks[verdict.check] = "refused"
            return self._refuse_unrecorded(command, checks, verdict.reason)
        checks["signature"] = checks["freshness"] = "ok"
        if self.approvals.is_pending(cid):
            return True  # parked already (a redelivery): it waits for its approval
        if cid in self.control.inflight:
            return self._finish(command, CommandStatus.FAILED, {**checks, "write": "unknown"}, (
                f"interrupted: the executor stopped while writing command {cid}; it is not "
                "written again. Read the setpoint on the device to know its state"))
        if refusal := self.switches.refusal(command.machine):
            return self._finish(command, CommandStatus.REJECTED,
                                {**checks, "kill_switch": "refused"}, refusal)
        checks["kill_switch"] = "ok"
        verdict = self.gateway.check(command, now)
        if not verdict.allowed:
            return self._finish(command, CommandStatus.REJECTED,
                                {**checks, verdict.check: "refused"}, verdict.reason)
        checks.update(allow_list="ok", range="ok", ttl="ok", rate="ok")
        if not self.catalog.info(command.setpoint).spec.two_person:
            return await self._apply(command, {**checks, "two_person": "n/a"})
        return self._park(command, doc, checks)

    def _park(self, command: Command, doc: dict[str, Any], checks: dict[str, str]) -> bool:
        """Two-person setpoint: wait (durably, on the control topic) for an approval."""
        cid = command.command_id
        record = ControlRecord(ControlKind.PENDING.value, cid, True,
                               "waits for a second operator", now_ms(), json.dumps(doc))
        if not self.out.publish(self.topics.control, record.key(), record.encode()):
            return False
        self.approvals.park(command)
        self.counters["pending"] += 1
        logger.warning("command %s for %s waits for a second operator's approval until %s",
                       cid, command.setpoint, command.expires_at)
        return self._audit(command, "pending", {**checks, "two_person": "waiting"}, (
            f"waiting: {command.setpoint} needs a second operator; another operator must run "
            f"`millstream command approve {cid}` before {command.expires_at}"))

    async def _decided(self, decision: Decision) -> None:
        command, cid = decision.command, decision.command.command_id
        checks = {"schema": "ok", "replay": "ok", "signature": "ok", "freshness": "ok",
                  "allow_list": "ok", "range": "ok", "rate": "ok"}
        if decision.approved_by is None:
            done = self._finish(command, CommandStatus.REJECTED,
                                {**checks, "two_person": "refused"}, decision.refusal or "")
        elif now_ms() > command.expires_at:
            done = self._finish(command, CommandStatus.REJECTED, {**checks, "ttl": "refused"},
                                f"expired: command {cid} was approved by "
                                f"{decision.approved_by} after it expired at "
                                f"{command.expires_at}; send it again")
        elif refusal := self.switches.refusal(command.machine):
            done = self._finish(command, CommandStatus.REJECTED,
                                {**checks, "kill_switch": "refused"}, refusal)
        else:
            done = await self._apply(command, {
                **checks, "ttl": "ok", "kill_switch": "ok",
                "two_person": f"ok: approved by {decision.approved_by}"})
        if done:
            self.approvals.clear(cid)
            for kind in (ControlKind.PENDING, ControlKind.APPROVAL):
                self.out.publish(self.topics.control, f"{kind.value}/{cid}".encode(), None)

    async def _apply(self, command: Command, checks: dict[str, str]) -> bool:
        path, value = self._path(command), float(command.value)
        try:
            before = await self.devices.read_value(path)
        except DeviceError as exc:
            return self._finish(command, CommandStatus.FAILED, {**checks, "read": "failed"},
                                f"cannot read the current value, so nothing was written: {exc}")
        verdict = self.gateway.check_change(path, value, before, self._last_write.get(path),
                                            now_ms())
        if not verdict.allowed:
            return self._finish(command, CommandStatus.REJECTED,
                                {**checks, verdict.check: "refused"}, verdict.reason,
                                before=before)
        checks.update(step="ok", rate_of_change="ok")
        if refusal := self.switches.refusal(command.machine):  # switched on meanwhile
            return self._finish(command, CommandStatus.REJECTED,
                                {**checks, "kill_switch": "refused"}, refusal, before=before)
        if self.dry_run or command.dry_run:
            return self._finish(command, CommandStatus.DRY_RUN, {**checks, "write": "skipped"},
                                f"dry run: every check passed; would write {value:g} to {path} "
                                f"(now {before:g}); nothing was written", before=before)
        inflight = ControlRecord(ControlKind.INFLIGHT.value, command.command_id, True,
                                 f"writing {path}={value:g}", now_ms())
        if not self.out.publish(self.topics.control, inflight.key(), inflight.encode()):
            return False
        outcome = await write_setpoint(
            self.devices, self.catalog, path, value, attempts=self.attempts,
            give_up=lambda: self.stop.is_set() or now_ms() >= command.expires_at)
        if outcome.checks.get("write") == "ok":
            self._last_write[path] = now_ms()
        done = self._finish(command, outcome.status, {**checks, **outcome.checks},
                            outcome.detail, before=before, readback=outcome.readback)
        if done:
            self.out.publish(self.topics.control, inflight.key(), None)
        return done

    # -- outcomes ----------------------------------------------------------------------------
    def _path(self, command: Command) -> str:
        try:
            return self.catalog.resolve(command.setpoint)
        except CatalogError:
            return command.setpoint

    def _remember(self, result: CommandResult) -> None:
        self._results[result.command_id] = result
        while len(self._results) > _REMEMBERED_RESULTS:
            self._results.popitem(last=False)
        if result.status == CommandStatus.APPLIED.value:
            last = self._last_write.get(result.setpoint, 0)
            self._last_write[result.setpoint] = max(last, result.executed_at)

    def _finish(self, command: Command, status: CommandStatus, checks: dict[str, str],
                detail: str, *, before: float | None = None,
                readback: float | None = None) -> bool:
        """Publish the command's result (its durable memory), then its audit record."""
        result = CommandResult(command_id=command.command_id, setpoint=self._path(command),
                               requested=finite_or_none(command.value) or 0.0,
                               readback=readback, status=status.value, detail=detail,
                               executed_at=now_ms())
        if not self.out.publish(self.topics.command_results, result.key(), result.encode()):
            return False
        self._remember(result)
        self.counters[status.value] += 1
        if status is CommandStatus.FAILED:
            self.last_error = f"command {command.command_id} failed: {detail}"
        log = logger.info if status in (CommandStatus.APPLIED, CommandStatus.DRY_RUN) \
            else logger.warning
        log("command %s %s=%s: %s (%s)", command.command_id, result.setpoint, command.value,
            status.value, detail)
        return self._audit(command, status.value, checks, detail, before, readback)

    def _refuse_unrecorded(self, command: Command, checks: dict[str, str], why: str) -> bool:
        """A refusal that must not take the command id's result slot (a replay, a forgery):
        audited only."""
        self.counters["rejected"] += 1
        logger.warning("command %s refused: %s", command.command_id, why)
        return self._audit(command, CommandStatus.REJECTED.value, checks, why)

    def _audit(self, command: Command | None, verdict: str, checks: dict[str, str],
               detail: str, before: float | None = None, after: float | None = None,
               doc: dict[str, Any] | None = None) -> bool:
        dry = bool(command is not None and (self.dry_run or command.dry_run))
        record = AuditRecord.of(command, doc, verdict=verdict, detail=detail, checks=checks,
                                value_before=before, value_after=after, dry_run=dry)
        return self.out.publish(self.topics.command_audit, record.key(), record.encode())

    def _malformed(self, msg: Message, doc: dict[str, Any] | None, reason: str,
                   detail: str) -> bool:
        """Dead-lettered with the reason, and audited as refused: never written."""
        dl = DeadLetter.of(stage=STAGE, reason=reason, detail=detail, topic=msg.topic() or "",
                           partition=msg.partition() or 0, offset=msg.offset() or 0,
                           key=msg.key(), value=msg.value())
        self.counters["deadlettered"] += 1
        logger.warning("executor: dead-lettered %s[%s]@%s: %s: %s", dl.topic, dl.partition,
                       dl.offset, reason, detail)
        if not self.out.publish(self.topics.deadletter, dl.key_bytes(), dl.encode()):
            return False
        return self._audit(None, CommandStatus.REJECTED.value, {"schema": "refused"},
                           f"malformed command ({reason}): {detail}", doc=doc)

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {**self.counters, "kill_switches": self.switches.active(),
                "lag": self.lag, "last_error": self.last_error,
                "running": not self.stop.is_set(), "updated_at": now_ms()}

    def _write_status(self) -> None:
        write_status(self.status_file, self.health.report(self.status()))
