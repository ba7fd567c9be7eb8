"""Kafka topic names: the public contract other teams subscribe to.

The names are ``<prefix>.readings`` and so on; the prefix is ``millstream`` unless a
deployment sets another (``MILLSTREAM_TOPIC_PREFIX``), for example to run a staging
pipeline beside production on one cluster. Tests use a fresh prefix each.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "Topics"]

DEFAULT_PREFIX = "millstream"


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = DEFAULT_PREFIX

    @property
    def readings(self) -> str:
        return f"{self.prefix}.readings"

    @property
    def aggregates(self) -> str:
        return f"{self.prefix}.aggregates"

    @property
    def anomalies(self) -> str:
        return f"{self.prefix}.anomalies"

    @property
    def commands(self) -> str:
        return f"{self.prefix}.commands"

    @property
    def command_results(self) -> str:
        return f"{self.prefix}.command-results"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def control(self) -> str:
        """Kill switches, approvals and the executor's pending writes (compacted)."""
        return f"{self.prefix}.control"

    @property
    def command_audit(self) -> str:
        """One record per decision of the executor (append-only)."""
        return f"{self.prefix}.command-audit"

    @property
    def late(self) -> str:
        """Readings that arrived after their window had closed, with the reason."""
        return f"{self.prefix}.late"

    @property
    def streams_state(self) -> str:
        """The stream workers' checkpoints (compacted; internal, not a contract): keyed by
        app id and input partition. The worker creates it."""
        return f"{self.prefix}.streams-state"

    @property
    def alarms(self) -> str:
        """Alarm episodes: one record per state change (schemas.alarms)."""
        return f"{self.prefix}.alarms"

    @property
    def alarm_actions(self) -> str:
        """Operators' ack, shelve and unshelve, keyed by the machine's source."""
        return f"{self.prefix}.alarm-actions"

    @property
    def anomaly_feedback(self) -> str:
        """Operators' false-positive verdicts, keyed by the machine's source."""
        return f"{self.prefix}.anomaly-feedback"

    @property
    def twin(self) -> str:
        """Each machine's current state, keyed by machine path (compacted; schemas.twin)."""
        return f"{self.prefix}.twin"

    @property
    def twin_inputs(self) -> str:
        """Internal to the streams stage: what changes a twin (readings' share, alarms,
        command results), keyed by machine path, so one worker owns each machine's twin."""
        return f"{self.prefix}.twin-inputs"

    @property
    def kpis(self) -> str:
        """OEE and energy per machine and shift (schemas.kpis)."""
        return f"{self.prefix}.kpis"

    @property
    def spc(self) -> str:
        """Control chart violations and Cp/Cpk per shift (schemas.spc_events)."""
        return f"{self.prefix}.spc"

    def all(self) -> tuple[str, ...]:
        return (self.readings, self.aggregates, self.anomalies, self.commands,
                self.command_results, self.deadletter, self.control, self.command_audit,
                self.late, self.alarms, self.alarm_actions, self.anomaly_feedback, self.twin,
                self.twin_inputs, self.kpis,
                self.spc)

    def config(self, topic: str) -> dict[str, str]:
        """Topic settings millstream creates a topic with. The results and the control
        topic are the executor's durable memory: compacted, so the latest entry per key
        (command id, kill switch) is kept for ever and reloaded when it starts."""
        if topic in (self.command_results, self.control):
            return {"cleanup.policy": "compact"}
        if topic == self.streams_state:
            # compacted, with segments that roll within minutes so that old checkpoints
            # are cleaned soon and a worker taking a partition over reads little
            return {"cleanup.policy": "compact", "segment.ms": "300000",
                    "min.cleanable.dirty.ratio": "0.2", "delete.retention.ms": "3600000"}
        if topic == self.twin:
            # the current state per machine; segments roll every 10 min so that the part
            # a reader must skip (updates not compacted yet) stays short
            return {"cleanup.policy": "compact", "segment.ms": "600000"}
        return {}

    def partitions(self, topic: str) -> int:
        """Partitions millstream creates a topic with. Readings are keyed by source, so a
        source's frames stay in order on one partition; three let three workers share them.
        The state topic has as many, so each input partition's checkpoints have a state
        partition of their own. Alarm actions and feedback are keyed by source too and
        have as many partitions, so the worker that reads a source's readings gets its
        machines' actions (Faust assigns the same partition of topics with equal
        partition counts to one worker). The twin's inputs are keyed by machine and spread
        over as many, so that the twins are shared too."""
        spread = (self.readings, self.aggregates, self.streams_state, self.alarm_actions,
                  self.anomaly_feedback, self.twin_inputs)
        return 3 if topic in spread else 1
