"""Root of millstream's exceptions, and the contract errors every stage shares."""

from __future__ import annotations


class MillstreamError(Exception):
    """Root of every error millstream raises on purpose."""


class ContractError(MillstreamError):
    """A message does not follow its topic's contract.

    ``reason`` is short and stable (it goes into the dead-letter record and counters);
    ``detail`` says what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CatalogError(MillstreamError):
    """The plant catalog (tags, sources, rules) is missing or invalid."""
