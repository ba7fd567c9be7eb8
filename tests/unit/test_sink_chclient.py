"""Client options from settings: user, password, TLS for servers, nothing for chDB; secrets
never in a message; TTLs per table from the environment."""

from __future__ import annotations

import logging

import pytest

from millstream.settings import Settings
from sinks.chclient import ClientOptions, client_kwargs, hide_secrets, open_client, redact_dsn
from sinks.exceptions import SinkError
from tests.conftest import free_port


def test_server_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_USER", "analyst")
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_PASSWORD", "s3cret")
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_SECURE", "true")
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_VERIFY", "false")
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_CA_CERT", "/etc/ssl/ch-ca.pem")
    settings = Settings()
    opts = ClientOptions.from_settings(settings)
    assert "s3cret" not in repr(opts) and "s3cret" not in repr(settings)
    kw = client_kwargs("https://ch.plant:8443/millstream", opts)
    assert kw == {"dsn": "https://ch.plant:8443/millstream", "tz_mode": "schema",
                  "username": "analyst", "password": "s3cret", "secure": True,
                  "verify": False, "ca_cert": "/etc/ssl/ch-ca.pem"}


def test_chdb_takes_no_server_options() -> None:
    opts = ClientOptions("u", None, True, False, "/ca.pem")
    assert client_kwargs("chdb:///data/chdb", opts) == {"dsn": "chdb:///data/chdb",
                                                         "tz_mode": "schema"}


def test_unknown_scheme_is_named_without_its_password() -> None:
    with pytest.raises(SinkError, match=r"tcp://u:\*\*\*@h:9000") as info:
        client_kwargs("tcp://u:pw123@h:9000", ClientOptions())
    assert "pw123" not in str(info.value)


def test_redact_dsn() -> None:
    assert redact_dsn("https://bob:hunter2@ch:8443/db") == "https://bob:***@ch:8443/db"
    assert redact_dsn("http://ch:8123") == "http://ch:8123"
    assert redact_dsn("chdb:///var/lib/chdb") == "chdb:///var/lib/chdb"
    assert (redact_dsn("https://ch:8443/db?user=bob&password=hunter2&secure=1")
            == "https://ch:8443/db?user=bob&password=***&secure=1")


def test_unreachable_server_error_names_it_but_not_the_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pydantic import SecretStr

    port = free_port()  # nothing listens: connection refused, for real
    dsn = f"http://bob:dsnpass@127.0.0.1:{port}/db"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SinkError) as info:
        open_client(dsn, ClientOptions("bob", SecretStr("optpass")))
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "***" in msg
    for secret in ("dsnpass", "optpass"):
        assert secret not in msg and secret not in caplog.text


def test_a_password_a_driver_error_echoes_is_hidden_as_written_and_decoded() -> None:
    from pydantic import SecretStr

    dsn = "http://bob:p%40ss%2F1@ch:8123/db?password=qp-secret"
    echoed = f"bad login p@ss/1 via {dsn} (also: opt-secret, qp-secret)"
    msg = hide_secrets(echoed, dsn, ClientOptions("bob", SecretStr("opt-secret")))
    assert msg == ("bad login *** via http://bob:***@ch:8123/db?password=*** "
                   "(also: ***, ***)")


def test_ttl_days_per_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLSTREAM_TTL_READINGS_DAYS", "30")
    monkeypatch.setenv("MILLSTREAM_TTL_ROLLUPS_DAYS", "0")
    ttl = Settings().ttl_days()
    assert ttl["readings"] == 30 and ttl["readings_1m"] == ttl["readings_1h"] == 0
    assert ttl["aggregates"] == ttl["anomalies"] == 365
    monkeypatch.setenv("MILLSTREAM_TTL_READINGS_DAYS", "-1")
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Settings()
