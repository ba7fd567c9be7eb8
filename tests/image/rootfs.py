"""Build the image (``scripts/build_image.py``) and run commands in it, without an engine.

No container engine runs here, so a command runs the way a Kubernetes pod with the chart's
securityContext would run it: buildah mounts the image's root filesystem, and in a private
mount namespace (``unshare``) it is bound read-only, with a tmpfs on /tmp and a host folder
on the data directory as the only writable places, then entered with ``chroot`` as the
image's user, with the image's environment, working directory and entrypoint. The network
is the host's: a process in the image reaches a broker on loopback.

Needs root (buildah's storage, mounts); fails with the fix, never skips.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["BuiltImage", "ImageRoot", "build_image", "image_root"]

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build_image.py"


@dataclass(frozen=True)
class BuiltImage:
    """What ``scripts/build_image.py`` reported on its last stdout line."""

    ref: str
    built: bool
    size: str
    seconds: float
    storage_driver: str
    config: dict[str, Any]  # the OCI config: User, Env, Entrypoint, WorkingDir, Labels

    @property
    def buildah(self) -> list[str]:
        return [_buildah_binary(), "--storage-driver", self.storage_driver]

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env") or [])


def _buildah_binary() -> str:
    found = shutil.which("buildah")
    if not found:
        pytest.fail("buildah is not installed: run `make image` (or `make test`), which "
                    "installs it and mmdebstrap with apt-get (as root)")
    return found


def build_image() -> BuiltImage:
    """Build the image, or find it up to date (a second or two); fail with the build's log."""
    if os.geteuid() != 0:
        pytest.fail("the image tests need root (buildah's storage, mount namespaces): run "
                    "`make test` as root, as CI does")
    _buildah_binary()
    proc = subprocess.run([sys.executable, str(BUILD_SCRIPT)], capture_output=True, text=True,
                          timeout=1800, check=False, cwd=ROOT)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build_image.py failed (exit {proc.returncode}):\n"
                    f"{proc.stderr[-6000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    inspect = subprocess.run([_buildah_binary(), "--storage-driver", report["storage_driver"],
                              "inspect", "--type", "image", report["image"]],
                             capture_output=True, text=True, check=True)
    config = json.loads(inspect.stdout)["OCIv1"]["config"]
    return BuiltImage(report["image"], report["built"], report["size"], report["seconds"],
                      report["storage_driver"], config)


@dataclass(frozen=True)
class ImageRoot:
    """A mounted working container of the image; ``run`` executes in it read-only."""

    image: BuiltImage
    rootfs: Path  # buildah's mount of the container (read-write: never run in it)
    mountpoint: Path  # where each command binds it read-only, in its own mount namespace
    data_dir: Path  # host folder mounted on the image's MILLSTREAM_DATA_DIR

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            entrypoint: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ENTRYPOINT + argv (or argv alone) as the image's user, read-only root."""
        return subprocess.run(self.command(argv, env, entrypoint), capture_output=True,
                              text=True, timeout=timeout, check=False)

    def command(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                entrypoint: bool = True) -> list[str]:
        """The host command line that runs argv in the image (for run, or a Popen)."""
        config = self.image.config
        full = [*(config.get("Entrypoint") or []), *argv] if entrypoint else list(argv)
        variables = {**self.image.env, **(env or {})}
        user = config.get("User") or "0:0"
        workdir = config.get("WorkingDir") or "/"
        data = self.image.env["MILLSTREAM_DATA_DIR"]
        target = self.mountpoint
        q = shlex.quote
        setup = " && ".join([
            f"mount --bind {q(str(self.rootfs))} {q(str(target))}",
            f"mount -o remount,bind,ro {q(str(target))}",
            f"mount -t tmpfs -o mode=1777,size=256m tmpfs {q(str(target / 'tmp'))}",
            f"mount --bind {q(str(self.data_dir))} {q(str(target))}{q(data)}",
            f"mount -t proc proc {q(str(target / 'proc'))}",
            f"mount --rbind /dev {q(str(target / 'dev'))}",
            f"mount --rbind /sys {q(str(target / 'sys'))}",
        ])
        inner = (f"cd {q(workdir)} && exec /usr/bin/env -i "
                 + " ".join(q(f"{k}={v}") for k, v in variables.items()) + " "
                 + " ".join(q(a) for a in full))
        run_in_root = f"exec chroot --userspec={q(user)} {q(str(target))} /bin/sh -c {q(inner)}"
        return ["unshare", "--mount", "--fork", "--kill-child=SIGTERM", "--", "/bin/sh", "-c",
                f"{setup} && {run_in_root}"]


@contextmanager
def image_root(image: BuiltImage, workdir: Path) -> Iterator[ImageRoot]:
    """Mount a fresh working container of ``image`` (removed afterwards). ``workdir/data``
    becomes its data directory, owned by the image's user as Kubernetes' fsGroup makes an
    emptyDir; ``workdir/root`` the mount point."""
    uid, _, gid = (image.config.get("User") or "0:0").partition(":")
    data_dir, mountpoint = workdir / "data", workdir / "root"
    data_dir.mkdir()
    mountpoint.mkdir()
    os.chown(data_dir, int(uid), int(gid or uid))
    container = subprocess.run([*image.buildah, "from", "--pull-never", "--quiet", image.ref],
                               capture_output=True, text=True, check=True).stdout.strip()
    try:
        mounted = subprocess.run([*image.buildah, "mount", container], capture_output=True,
                                 text=True, check=True).stdout.strip()
        yield ImageRoot(image, Path(mounted), mountpoint, data_dir)
    finally:
        subprocess.run([*image.buildah, "umount", container], capture_output=True, check=False)
        subprocess.run([*image.buildah, "rm", container], capture_output=True, check=False)
