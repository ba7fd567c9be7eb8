"""Errors the edge connectors raise on purpose; each names the thing and what to do."""

from __future__ import annotations

from schemas.exceptions import MillstreamError

__all__ = [
    "ConnectorConfigError",
    "ConnectorError",
    "DeviceError",
    "PublishError",
    "SpoolError",
]


class ConnectorError(MillstreamError):
    """Root of the connector errors."""


class ConnectorConfigError(ConnectorError):
    """The connector cannot start with this configuration (endpoint, namespace, protocol)."""


class DeviceError(ConnectorError):
    """A device (OPC-UA server, Modbus slave) did not answer as expected.

    ``endpoint`` is where the connector looked; the connector retries these.
    """

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class PublishError(ConnectorError):
    """Kafka refused or lost readings; ``failed`` is how many readings were affected."""

    def __init__(self, message: str, failed: int = 0) -> None:
        super().__init__(message)
        self.failed = failed


class SpoolError(ConnectorError):
    """The disk spool cannot be used (folder in use, not writable, a frame larger than it)."""
