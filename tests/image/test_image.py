"""The container image, built here (``make image``) and run as a pod would run it.

Each command runs in the image's root filesystem, read-only, as the image's user (uid
10001), with only /tmp and the data directory writable (tests/image/rootfs.py). A
stage runs from it against the session Kafka and answers /healthz and /readyz; the sink's
migration on chDB in the data directory shows it writes where a pod may write.
"""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from millstream.stack.kafka import free_port
from schemas.clickhouse import load_migrations
from tests.image.rootfs import ROOT, BuiltImage, ImageRoot, build_image, image_root

# the first build on a machine takes minutes (the base, the dependencies' wheels)
pytestmark = pytest.mark.timeout(1800)

UID = "10001"
DATA_DIR = "/var/lib/millstream"


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    return build_image()


@pytest.fixture
def root(image: BuiltImage, tmp_path: Path) -> Iterator[ImageRoot]:
    with image_root(image, tmp_path) as mounted:
        yield mounted


def test_one_image_for_every_stage_runs_as_uid_10001(image: BuiltImage) -> None:
    config = image.config
    assert config["Entrypoint"] == ["millstream"]
    assert config["User"] == f"{UID}:{UID}"  # helm/millstream: runAsUser/runAsGroup 10001
    assert image.env["MILLSTREAM_DATA_DIR"] == DATA_DIR  # the chart's dataDir emptyDir
    assert image.env["HOME"].startswith("/tmp")  # the chart's /tmp emptyDir
    assert image.env["MILLSTREAM_CACHE_DIR"].startswith("/tmp/")


def test_the_runtime_has_no_java_no_pip_and_no_compiler(root: ImageRoot) -> None:
    venv_bin = root.rootfs / "opt/millstream/bin"
    assert (venv_bin / "millstream").is_file()
    for absent in ("usr/bin/java", "usr/bin/gcc", "usr/bin/cc", "opt/pip",
                   "opt/millstream/bin/pip"):
        assert not (root.rootfs / absent).exists(), f"{absent} should not be in the image"


def test_version_inside_the_image(root: ImageRoot) -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    proc = root.run(["--version"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"millstream {expected}"


def test_the_root_filesystem_is_read_only_and_the_user_is_not_root(root: ImageRoot) -> None:
    """The harness itself: what the other tests run really is read-only and unprivileged."""
    script = ("id -u; id -g; touch /opt/millstream/x 2>&1 || true; "
              f"touch /tmp/x {DATA_DIR}/x && echo writable; "
              "python3 -c 'import sys; print(sys.prefix)'")  # as the chart's `helm test` pod
    proc = root.run(["/bin/sh", "-c", script], entrypoint=False)
    assert proc.returncode == 0, proc.stderr
    uid, gid, refused, writable, prefix = proc.stdout.strip().splitlines()
    assert (uid, gid) == (UID, UID)
    assert "Read-only file system" in refused
    assert writable == "writable"
    assert (root.data_dir / "x").is_file()
    assert prefix == "/opt/millstream"  # python3 on PATH is millstream's venv


def test_every_stage_module_imports_in_the_image(root: ImageRoot) -> None:
    """Every module of every stage imports: no dependency or system library missing (the
    image drops the test suites of pandas, scipy, numpy and pyarrow)."""
    script = ("import importlib, pkgutil\n"
              "names = []\n"
              "for top in ('schemas', 'connectors', 'streams', 'sinks', 'millstream'):\n"
              "    package = importlib.import_module(top)\n"
              "    for info in pkgutil.walk_packages(package.__path__, top + '.'):\n"
              "        importlib.import_module(info.name)\n"
              "        names.append(info.name)\n"
              "print(len(names))\n")
    proc = root.run(["/opt/millstream/bin/python", "-c", script], entrypoint=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip().splitlines()[-1]) > 50


def test_sink_health_check_migrates_chdb_in_the_data_dir(root: ImageRoot) -> None:
    """The sink's migration loads its whole stack (clickhouse-connect, chDB)."""
    proc = root.run(["sink", "migrate"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["version"] == load_migrations()[-1].version
    assert result["applied"] == [m.version for m in load_migrations()]
    assert (root.data_dir / "chdb").is_dir()  # written where the chart mounts an emptyDir


def test_a_stage_in_the_image_answers_its_health_endpoints(root: ImageRoot,
                                                           kafka_bootstrap: str) -> None:
    """The sink, started from the image against the session Kafka (the host's network, as
    a pod's sidecar-less probe sees it), serves /healthz and becomes ready on /readyz."""
    port = free_port()
    env = {"MILLSTREAM_KAFKA_BOOTSTRAP": kafka_bootstrap, "MILLSTREAM_METRICS_PORT": str(port),
           "MILLSTREAM_TOPIC_PREFIX": f"image-{port}"}
    proc = subprocess.Popen(root.command(["sink"], env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        answers: dict[str, int] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and answers.get("/readyz") != 200:
            assert proc.poll() is None, (proc.stdout.read() if proc.stdout else "")[-3000:]
            for path in ("/healthz", "/readyz"):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                        answers[path] = r.status
                except urllib.error.HTTPError as exc:
                    answers[path] = exc.code
                except OSError:
                    answers[path] = 0
            time.sleep(1)
        assert answers == {"/healthz": 200, "/readyz": 200}, answers
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
