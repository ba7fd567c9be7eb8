"""Kafka client errors a person can act on: a refused login, an untrusted certificate.

librdkafka (confluent-kafka) and aiokafka report both as a connection that failed and
retry for ever. :func:`explain_kafka_error` turns them into a sentence that names the
broker, the user or the CA file, and the setting to fix; every stage uses it. Passwords
are never part of the sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError

__all__ = ["KafkaErrorLog", "explain_kafka_error", "is_config_error"]

_AUTH_WORDS = ("SASL authentication error", "SaslAuthenticationFailed",
               "Authentication failed", "SASL_AUTHENTICATION_FAILED")
_TLS_WORDS = ("certificate verify failed", "CERTIFICATE_VERIFY_FAILED", "SSL handshake failed")


def _kind(code: int | None, text: str) -> str | None:
    if code == KafkaError._AUTHENTICATION or any(w in text for w in _AUTH_WORDS):
        return "auth"
    if code == KafkaError._SSL or any(w in text for w in _TLS_WORDS):
        return "tls"
    return None


def is_config_error(code: int | None, text: str = "") -> bool:
    """True for a refused login or a failed TLS handshake: retrying will not help."""
    return _kind(code, text) is not None


def explain_kafka_error(code: int | None, text: str, bootstrap: str,
                        conf: Mapping[str, Any] | None = None) -> str:
    """``text`` (the client's words), with the cause and the fix when it is a refused
    login or an untrusted broker certificate; other errors as they are."""
    conf = conf or {}
    kind = _kind(code, text)
    if kind == "auth":
        user = conf.get("sasl.username") or "(none)"
        mechanism = conf.get("sasl.mechanism") or "PLAIN"
        return (f"Kafka at {bootstrap} refused the login of user {user!r} ({mechanism}): the "
                "user name or the password is wrong, or the user has no credentials for "
                f"{mechanism}. Check MILLSTREAM_KAFKA_SASL_USERNAME, "
                "MILLSTREAM_KAFKA_SASL_PASSWORD and MILLSTREAM_KAFKA_SASL_MECHANISM "
                f"(the client said: {text})")
    if kind == "tls":
        ca = conf.get("ssl.ca.location") or "unset, so the system's CAs"
        return (f"the TLS handshake with Kafka at {bootstrap} failed: the broker's certificate "
                f"is not signed by the CA this client trusts ({ca}), or does not name the "
                "host. Point MILLSTREAM_KAFKA_SSL_CA_LOCATION at the PEM file of the CA that "
                f"signed the brokers' certificates (the client said: {text})")
    return f"Kafka at {bootstrap}: {text}"


class KafkaErrorLog:
    """An ``error_cb`` for confluent-kafka clients: logs each kind of error once (the client
    repeats itself while it retries), explained, and keeps the last one in ``last``."""

    def __init__(self, bootstrap: str, conf: Mapping[str, Any], logger: logging.Logger) -> None:
        self.bootstrap = bootstrap
        self._conf = {k: conf.get(k) for k in ("sasl.username", "sasl.mechanism",
                                                "ssl.ca.location")}  # no password kept
        self._logger = logger
        self._seen: set[int] = set()
        self.last: str | None = None
        self.config_error: str | None = None  # the last refused login or TLS failure

    def __call__(self, err: KafkaError) -> None:
        message = explain_kafka_error(err.code(), err.str(), self.bootstrap, self._conf)
        self.last = message
        config = is_config_error(err.code(), err.str())
        if config:
            self.config_error = message
        if err.code() not in self._seen:
            self._seen.add(err.code())
            self._logger.log(logging.ERROR if config else logging.WARNING, "%s", message)

    def reset(self) -> None:
        """Log the next error again (after the client worked once more)."""
        self._seen.clear()
