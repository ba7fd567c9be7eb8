"""Edge connectors: OPC-UA and Modbus sources bridged into the readings topic."""

from connectors.base import FramePublisher, Source
from connectors.exceptions import ConnectorConfigError, ConnectorError, DeviceError, PublishError
from connectors.modbus import ModbusSource
from connectors.opcua import OpcUaSource
from connectors.publisher import ReadingPublisher
from connectors.run import make_source, run_connector

__all__ = [
    "ConnectorConfigError",
    "ConnectorError",
    "DeviceError",
    "FramePublisher",
    "ModbusSource",
    "OpcUaSource",
    "PublishError",
    "ReadingPublisher",
    "Source",
    "make_source",
    "run_connector",
]
