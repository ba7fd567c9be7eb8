"""Run one source of the catalog into Kafka until told to stop: ``millstream connect``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from connectors.base import FRAME_IDLE_MS, FRAME_MS, FramePublisher, Source
from connectors.deadletter import DeadLetterPublisher, DeadLetterSink
from connectors.exceptions import ConnectorConfigError
from connectors.modbus import ModbusSource
from connectors.mqtt import MqttSource
from connectors.opcua import OpcUaSource
from connectors.publisher import ReadingPublisher
from connectors.spool import Spool, SpoolConfig
from connectors.spool_publisher import SpoolPublisher
from schemas.catalog import Catalog
from schemas.health import HealthConfig, KafkaProbe, StageHealth
from schemas.readings import Quality
from schemas.topics import Topics

__all__ = ["attach_gaps", "make_source", "open_publisher", "run_connector"]

logger = logging.getLogger(__name__)


def make_source(
    catalog: Catalog,
    source_name: str,
    publisher: FramePublisher,
    *,
    endpoint: str | None = None,
    status_file: Path | None = None,
    frame_ms: int = FRAME_MS,
    frame_idle_ms: int = FRAME_IDLE_MS,
    pki_dir: Path | None = None,
    dead_letters: DeadLetterSink | None = None,
) -> Source:
    """The :class:`Source` for the catalog's source ``source_name``, by its protocol.

    ``dead_letters`` takes the messages an MQTT source cannot map (other sources have none).
    """
    spec = catalog.source(source_name)  # CatalogError names the known sources
    kinds: dict[str, type[Source]] = {
        "opcua": OpcUaSource,
        "modbus": ModbusSource,
        "mqtt": MqttSource,
    }
    kind = kinds.get(spec.protocol)
    if kind is None:
        raise ConnectorConfigError(
            f"source {source_name!r} speaks {spec.protocol!r}, which `millstream connect` "
            f"does not bridge (it bridges: {', '.join(kinds)})"
        )
    if spec.protocol == "opcua":
        return OpcUaSource(catalog, spec, publisher, endpoint=endpoint, status_file=status_file,
                           frame_ms=frame_ms, frame_idle_ms=frame_idle_ms, pki_dir=pki_dir)
    if spec.protocol == "mqtt":
        return MqttSource(catalog, spec, publisher, endpoint=endpoint, status_file=status_file,
                          frame_ms=frame_ms, frame_idle_ms=frame_idle_ms,
                          dead_letters=dead_letters)
    return ModbusSource(catalog, spec, publisher, endpoint=endpoint, status_file=status_file,
                        frame_ms=frame_ms, frame_idle_ms=frame_idle_ms)


async def run_connector(
    catalog: Catalog,
    source_name: str,
    *,
    bootstrap: str,
    topics: Topics,
    kafka_config: dict[str, str] | None = None,
    endpoint: str | None = None,
    status_file: Path | None = None,
    frame_ms: int = FRAME_MS,
    frame_idle_ms: int = FRAME_IDLE_MS,
    stop: asyncio.Event | None = None,
    pki_dir: Path | None = None,
    spool: SpoolConfig | None = None,
    health: HealthConfig | None = None,
) -> dict[str, Any]:
    """Bridge ``source_name`` into ``topics.readings`` until ``stop`` is set.

    Returns the final status (the same object the status file holds at the end). Device
    outages are retried and counted in the status; configuration errors raise
    :class:`~connectors.exceptions.ConnectorConfigError`. ``pki_dir`` holds the OPC-UA
    certificates (own and trusted): a secured OPC-UA source needs it. ``spool`` makes the
    connector store and forward through a disk spool (:mod:`connectors.spool_publisher`).
    ``health`` serves /healthz, /readyz (Kafka and the device) and /metrics.
    """
    publisher = open_publisher(bootstrap, topics, source_name, kafka_config=kafka_config,
                               spool=spool)
    letters: DeadLetterPublisher | None = None
    monitor = StageHealth("connector", health, kafka=KafkaProbe(bootstrap, kafka_config),
                          ready=_device_ready, context={"source": source_name})
    try:
        monitor.start()
        if catalog.source(source_name).protocol == "mqtt":
            letters = DeadLetterPublisher(bootstrap, topics, kafka_config=kafka_config,
                                          client_id=f"millstream-{source_name}-deadletter")
        source = make_source(catalog, source_name, publisher, endpoint=endpoint,
                             status_file=status_file, frame_ms=frame_ms,
                             frame_idle_ms=frame_idle_ms, pki_dir=pki_dir,
                             dead_letters=letters)
        attach_gaps(publisher, source)
        source.health = monitor
        logger.info("bridging %s (%s) at %s into %s", source_name, source.protocol,
                    getattr(source, "endpoint", "?"), topics.readings)
        return await source.serve(stop)
    finally:
        publisher.close()
        if letters is not None:
            letters.close()
        monitor.stop()


def _device_ready(doc: Mapping[str, Any]) -> str | None:
    """/readyz: the source is connected to its device (or broker)."""
    if doc.get("connected"):
        return None
    return (f"source {doc.get('source')} is not connected to its device: "
            f"{doc.get('last_error') or 'connecting'}")


def open_publisher(bootstrap: str, topics: Topics, source_name: str, *,
                   kafka_config: dict[str, str] | None = None,
                   spool: SpoolConfig | None = None) -> ReadingPublisher | SpoolPublisher:
    """The Kafka publisher of one source: store-and-forward through ``spool`` if given."""
    kafka = ReadingPublisher(bootstrap, topics, kafka_config=kafka_config,
                             client_id=f"millstream-{source_name}")
    if spool is None:
        return kafka
    try:
        return SpoolPublisher(kafka, Spool(spool))
    except BaseException:
        kafka.close()
        raise


def attach_gaps(publisher: FramePublisher, source: Source) -> None:
    """Readings a full spool drops become BAD gap markers in the source's own stream."""
    if isinstance(publisher, SpoolPublisher):
        def mark(tag: str, ts: int, reason: str) -> None:
            source.emit(tag, ts, None, Quality.BAD, status=reason)

        publisher.gap_handler = mark
