"""Authenticity of commands: a valid signature of a trusted issuer, issued recently.

Pure apart from reading public key files. A replay of a command id the executor has seen
is caught by the executor's durable memory of results; this refuses what that memory
cannot cover: a command issued in the future (beyond the clock skew), one older than the
longest allowed TTL, or one whose TTL is longer than that.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.events import Command
from schemas.signing import TrustedKeys, verify_doc
from sinks.safety import Verdict

__all__ = ["Authenticator"]

logger = logging.getLogger(__name__)


class Authenticator:
    """Checks signature and freshness; ``max_ttl_ms`` bounds ``expires_at - issued_at``
    and the age of a command, ``max_skew_ms`` how far in the future it may be issued."""

    def __init__(self, trusted: TrustedKeys, *, max_ttl_ms: int = 3_600_000,
                 max_skew_ms: int = 5_000) -> None:
        self.trusted = trusted
        self.max_ttl_ms = max_ttl_ms
        self.max_skew_ms = max_skew_ms

    def check(self, doc: dict[str, Any], command: Command, now_ms: int) -> Verdict:
        """``doc`` is the message as received (the signature covers exactly its fields)."""
        refusal = verify_doc(doc, self.trusted)
        if refusal is not None:
            return Verdict(False, f"{refusal} (command {command.command_id})", "signature")
        cid = command.command_id
        if command.issued_at > now_ms + self.max_skew_ms:
            ahead = command.issued_at - now_ms
            return Verdict(False, f"not fresh: command {cid} is issued {ahead} ms in the "
                           f"future (allowed clock skew {self.max_skew_ms} ms); check the "
                           "issuer's clock", "freshness")
        if command.expires_at - command.issued_at > self.max_ttl_ms:
            ttl = command.expires_at - command.issued_at
            return Verdict(False, f"not fresh: command {cid} asks for a TTL of {ttl} ms, "
                           f"more than the {self.max_ttl_ms} ms allowed; issue it with a "
                           "shorter expiry", "freshness")
        if now_ms - command.issued_at > self.max_ttl_ms + self.max_skew_ms:
            age = now_ms - command.issued_at
            return Verdict(False, f"replay: command {cid} was issued {age} ms ago, outside "
                           f"the {self.max_ttl_ms} ms window; the issuer must send a new "
                           "command", "freshness")
        return Verdict(True, "ok", "signature")
