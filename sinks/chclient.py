"""Open a ClickHouse client for a ``chdb://PATH`` or ``http(s)://`` DSN, the same way for
every stage: user, password and TLS options for a server, none for the in-process chDB.

Passwords never reach a log or an error message: :func:`redact_dsn` hides the one a DSN
may carry, and :class:`ClientOptions` keeps its own as a ``SecretStr``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pydantic import SecretStr

from sinks.exceptions import SinkError
from sinks.query_server import chdb_path, locked_by_another_process

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from millstream.settings import Settings

__all__ = ["ClientOptions", "client_kwargs", "hide_secrets", "open_client", "redact_dsn"]

logger = logging.getLogger(__name__)

_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)([^/@:]*):([^/@]*)@", re.I)
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|pwd)=)[^&#]*", re.I)


def redact_dsn(dsn: str) -> str:
    """The DSN with its password (``scheme://user:PASSWORD@host``, or a ``password=``
    query parameter) replaced by ``***``."""
    dsn = _USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:***@", dsn)
    return _QUERY_PASSWORD.sub(lambda m: f"{m.group(1)}***", dsn)


def hide_secrets(text: str, dsn: str, options: ClientOptions | None = None) -> str:
    """``text`` (a driver's error) with the DSN's password(s), as written and URL-decoded,
    and the options' password replaced by ``***``, and the DSN itself redacted."""
    found = [m.group(3) for m in _USERINFO.finditer(dsn)]
    found += [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(dsn)]
    secrets = {v for p in found for v in (p, unquote(p)) if v}
    if options is not None and options.password is not None:
        secrets.add(options.password.get_secret_value())
    text = text.replace(dsn, redact_dsn(dsn))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Connection options for a ClickHouse server; ignored for chDB (no users, no TLS)."""

    username: str | None = None
    password: SecretStr | None = None
    secure: bool | None = None  # None: from the DSN's scheme (https) or port
    verify: bool = True  # check the server's certificate
    ca_cert: str | None = None  # PEM file of the CA that signed it (or "certifi")

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientOptions:
        ca = settings.clickhouse_ca_cert
        return cls(settings.clickhouse_user, settings.clickhouse_password,
                   settings.clickhouse_secure, settings.clickhouse_verify,
                   str(ca) if ca is not None else None)


def client_kwargs(dsn: str, options: ClientOptions | None = None) -> dict[str, Any]:
    """The keyword arguments for ``clickhouse_connect.get_client`` (secrets included:
    never log this dict)."""
    kwargs: dict[str, Any] = {"dsn": dsn, "tz_mode": "schema"}
    if dsn.startswith("chdb:") or options is None:
        return kwargs
    if not dsn.startswith(("http://", "https://")):
        raise SinkError(f"the ClickHouse DSN {redact_dsn(dsn)!r} is neither chdb://PATH nor "
                        "http(s)://host:port/db; fix MILLSTREAM_CLICKHOUSE_DSN")
    if options.username:
        kwargs["username"] = options.username
    if options.password is not None:
        kwargs["password"] = options.password.get_secret_value()
    if options.secure is not None:
        kwargs["secure"] = options.secure
    kwargs["verify"] = options.verify
    if options.ca_cert:
        kwargs["ca_cert"] = options.ca_cert
    return kwargs


def open_client(dsn: str, options: ClientOptions | None = None, *,
                shared: bool = False) -> Client:
    """A clickhouse-connect client. ``shared``: a second client on a chDB directory this
    process already owns (the query server's), so the lock check is skipped."""
    import clickhouse_connect

    path = chdb_path(dsn)
    if not shared and path is not None and locked_by_another_process(path):
        raise SinkError(
            f"the chDB directory {path} is in use by another process (another `millstream "
            "sink` or `millstream demo`?); stop it, or give this sink another directory"
        )
    try:
        return clickhouse_connect.get_client(**client_kwargs(dsn, options))
    except SinkError:
        raise
    except Exception as exc:
        msg = hide_secrets(str(exc), dsn, options)
        raise SinkError(f"cannot open ClickHouse at {redact_dsn(dsn)}: {msg[:300]}") from exc
