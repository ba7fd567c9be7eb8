"""Errors the plant simulator raises on purpose."""

from __future__ import annotations

from schemas.exceptions import MillstreamError

__all__ = ["FaultSpecError", "PortInUseError", "SimulatorError"]


class SimulatorError(MillstreamError):
    """The plant simulator could not do what was asked."""


class FaultSpecError(SimulatorError, ValueError):
    """A fault specification (``kind@machine[/tag]:start[+duration]``) is invalid."""

    def __init__(self, spec: str, problem: str) -> None:
        super().__init__(f"fault spec {spec!r}: {problem}")
        self.spec = spec
        self.problem = problem


class PortInUseError(SimulatorError, OSError):
    """A simulator server could not listen on its port."""

    def __init__(self, protocol: str, port: int, detail: str = "") -> None:
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"the {protocol} simulator cannot listen on 127.0.0.1:{port}{extra}; "
            f"the port is probably in use: stop what holds it or choose another port"
        )
        self.protocol = protocol
        self.port = port
