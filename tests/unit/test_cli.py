"""The shell's errors: each names the thing and says what to do, with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from millstream import cli
from millstream.exceptions import StackError
from millstream.settings import Settings
from millstream.stack import kafka as kafka_mod
from millstream.stack.locate import resolve_bootstrap, write_broker_file


def test_unknown_source_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["connect", "plc-42"]) == 2
    err = capsys.readouterr().err
    assert "source 'plc-42' is not in the catalog" in err
    assert "opcua-sim" in err and "modbus-sim" in err


def test_missing_catalog_names_the_file_and_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("MILLSTREAM_CATALOG", str(missing))
    assert cli.main(["setup"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "MILLSTREAM_CATALOG" in err


def test_no_kafka_says_how_to_get_one(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(StackError, match="MILLSTREAM_KAFKA_BOOTSTRAP"):
        resolve_bootstrap(settings)


def test_running_broker_is_found_through_its_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    write_broker_file(settings, "127.0.0.1:12345")  # pid is ours, so alive
    assert resolve_bootstrap(settings) == "127.0.0.1:12345"
    assert resolve_bootstrap(Settings(data_dir=tmp_path, kafka_bootstrap="k:9092")) == "k:9092"


@pytest.mark.parametrize(("tool", "package"), [("java", "openjdk-17"), ("mvn", "maven")])
def test_missing_java_or_maven_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tool: str, package: str) -> None:
    real = kafka_mod.shutil.which
    monkeypatch.setattr(kafka_mod.shutil, "which",
                        lambda name: None if name == tool else real(name))
    with pytest.raises(StackError, match=f"apt-get install {package}"):
        kafka_mod.fetch_kafka(tmp_path, "4.1.1")


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MILLSTREAM_TOPIC_PREFIX", "staging")
    s = Settings()
    assert s.dsn == f"chdb://{tmp_path / 'chdb'}"
    assert s.topic_prefix == "staging"


def test_settings_read_a_yaml_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = tmp_path / "millstream.yaml"
    conf.write_text("clickhouse_dsn: http://ch:8123/plant\nkafka_bootstrap: k1:9092\n")
    monkeypatch.setenv("MILLSTREAM_CONFIG", str(conf))
    s = Settings()
    assert s.dsn == "http://ch:8123/plant" and s.kafka_bootstrap == "k1:9092"


def test_version_is_pyprojects(capsys: pytest.CaptureFixture[str]) -> None:
    """`millstream --version`, as the container image's test runs it."""
    import tomllib

    with (Path(__file__).resolve().parents[2] / "pyproject.toml").open("rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    with pytest.raises(SystemExit) as exited:
        cli.build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"millstream {expected}"
