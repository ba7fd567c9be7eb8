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


class OpcUaSecurityError(MillstreamError):
    """An OPC-UA secure connection was refused: the server's certificate is not trusted,
    expired or missing, the credentials were refused or cannot be read, or the server does
    not offer the configured policy.

    ``reason`` is short and stable (``untrusted``, ``expired``, ``credentials``,
    ``access_denied``, ``client_rejected``, ``policy``, ``config``); ``thumbprint`` is the
    server certificate's SHA-1 thumbprint when one is involved. The message never holds a
    secret.
    """

    def __init__(self, endpoint: str, reason: str, message: str,
                 thumbprint: str | None = None) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.reason = reason
        self.thumbprint = thumbprint
