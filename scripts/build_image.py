"""Build millstream's container image here, where no registry is reachable: ``make image``.

The base root filesystem comes from Debian's packages (``mmdebstrap``: bookworm, python3,
python3-venv) and is cached as ``$CACHE/image/base-HASH.tar``, HASH naming the package list
and mirrors. buildah imports it as ``localhost/millstream-base:HASH`` and builds the
Containerfile with ``BASE_IMAGE`` pointing at it (chroot isolation; overlay storage when the
kernel mounts it, else vfs). The image is labelled with a hash of its inputs (the base, the
Containerfile, the build context): when nothing changed, nothing is built.

Progress goes to stderr; the last stdout line is one JSON object: the image, whether it was
built, its size and the seconds taken. Standard library only: runs before any venv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "Containerfile"
IGNORE_FILE = ROOT / ".dockerignore"  # read by docker, podman and buildah alike
LABEL = "io.millstream.inputs"
SUITE = "bookworm"
# what the Containerfile needs of its base: python3 with venv, CA certificates for TLS.
# The standard python:3.11-slim-bookworm has the same (its python in /usr/local).
PACKAGES = ("python3", "python3-venv", "ca-certificates")
MIRROR = os.environ.get("MILLSTREAM_IMAGE_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("MILLSTREAM_IMAGE_SECURITY_MIRROR",
                                 "http://deb.debian.org/debian-security")
# slim like Debian's own container images: merged /usr without the usrmerge package (and
# its perl), no manuals, translations or documentation but the copyright files
MMDEBSTRAP_OPTIONS = (
    "--variant=minbase",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=force-unsafe-io",
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    # this host's name and resolver are no part of the image: runtimes mount their own
    '--customize-hook=rm -f "$1/etc/resolv.conf" "$1/etc/hostname"',
)
CA_MOUNT = "/run/millstream-build/ca-certificates.crt"


class BuildError(Exception):
    """A step of the image build failed; the message says which and what to do."""


@dataclass(frozen=True)
class Base:
    """The Debian root filesystem the image is built on."""

    digest: str
    tar: Path

    @property
    def ref(self) -> str:
        return f"localhost/millstream-base:{self.digest}"


def log(message: str, started: float) -> None:
    print(f"[image {time.monotonic() - started:6.1f}s] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """``MILLSTREAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/millstream`` (as millstream's settings)."""
    explicit = os.environ.get("MILLSTREAM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "millstream"


def version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def sources() -> list[str]:
    return [f"deb {MIRROR} {SUITE} main", f"deb {MIRROR} {SUITE}-updates main",
            f"deb {SECURITY_MIRROR} {SUITE}-security main"]


def base_for(cache: Path) -> Base:
    recipe = json.dumps([SUITE, PACKAGES, MMDEBSTRAP_OPTIONS, sources()])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return Base(digest, cache / "image" / f"base-{digest}.tar")


def context_files() -> list[Path]:
    """The build context: the ``!`` lines of .dockerignore (everything else is ignored),
    without bytecode. The same files docker, podman and buildah send."""
    included = [line[1:].strip() for line in IGNORE_FILE.read_text().splitlines()
                if line.startswith("!")]
    files: list[Path] = []
    for name in included:
        path = ROOT / name
        if not path.exists():
            raise BuildError(f"{IGNORE_FILE.name} includes {name!r}, which does not exist: "
                             f"remove the line or restore the file")
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        files += [p for p in candidates if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix != ".pyc"]
    return files


def inputs_digest(base: Base) -> str:
    """Everything the image is made of: the base, the Containerfile, the context."""
    h = hashlib.sha256(base.digest.encode())
    for path in [CONTAINERFILE, IGNORE_FILE, *context_files()]:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def run(cmd: list[str], what: str, fix: str, capture: bool = False) -> str:
    """Run a command, its output on stderr (or captured); fail with the step and the fix."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE if capture else sys.stderr,
                          stderr=subprocess.PIPE if capture else None, text=True, check=False)
    if proc.returncode != 0:
        detail = f": {proc.stderr.strip()[-2000:]}" if capture and proc.stderr else ""
        raise BuildError(f"{what} failed (exit {proc.returncode}, `{' '.join(cmd)}`){detail}. "
                         f"{fix}")
    return proc.stdout if capture else ""


def stream(cmd: list[str], what: str, fix: str, started: float) -> None:
    """Run a long command, its output on stderr, each build step stamped with the time."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            step = " STEP " in line or " COMMIT " in line or line.startswith("I: ")
            stamp = f"[image {time.monotonic() - started:6.1f}s] " if step else ""
            print(f"{stamp}{line}", end="", file=sys.stderr, flush=True)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed (exit {proc.returncode}). {fix}")


def require(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")
    if not found:
        raise BuildError(f"{tool} is not installed. `make image` installs it (as root: "
                         f"apt-get update && apt-get install -y buildah mmdebstrap)")
    return found


def storage_driver() -> str:
    """overlay when the kernel mounts it here (fast, layers shared), else vfs (copies).
    An existing storage keeps its driver: containers/storage refuses to switch."""
    chosen = os.environ.get("MILLSTREAM_IMAGE_STORAGE_DRIVER")
    if chosen:
        return chosen
    graph = Path("/var/lib/containers/storage") if os.geteuid() == 0 else \
        Path.home() / ".local/share/containers/storage"
    for driver in ("overlay", "vfs"):
        if (graph / f"{driver}-images").is_dir():
            return driver
    with tempfile.TemporaryDirectory(prefix="millstream-overlay-probe-") as tmp:
        dirs = {name: Path(tmp) / name for name in ("lower", "upper", "work", "merged")}
        for d in dirs.values():
            d.mkdir()
        options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        probe = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options,
                                str(dirs["merged"])], capture_output=True, check=False)
        if probe.returncode == 0:
            subprocess.run(["umount", str(dirs["merged"])], check=False)
            return "overlay"
    return "vfs"


class Buildah:
    """buildah with one storage driver and chroot isolation (no namespaces needed)."""

    def __init__(self, driver: str) -> None:
        self.cmd = [require("buildah"), "--storage-driver", driver]

    def image_labels(self, ref: str) -> dict[str, str] | None:
        proc = subprocess.run([*self.cmd, "inspect", "--type", "image", ref],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return None
        config = json.loads(proc.stdout).get("OCIv1", {}).get("config", {})
        return dict(config.get("Labels") or {})

    def size(self, ref: str) -> str:
        """The image's size as buildah reports it (uncompressed, e.g. "1.34 GB")."""
        listing = run([*self.cmd, "images", "--json", ref], "listing the image",
                      "Run `make image` again", capture=True)
        return str(json.loads(listing)[0]["size"])


def ensure_base(buildah: Buildah, base: Base, refresh: bool, started: float) -> None:
    if refresh:
        base.tar.unlink(missing_ok=True)
    elif buildah.image_labels(base.ref) is not None:
        log(f"base {base.ref}: present", started)
        return
    if not base.tar.is_file():
        log(f"base: mmdebstrap {SUITE} with {', '.join(PACKAGES)} -> {base.tar} "
            f"(once; about a minute)", started)
        base.tar.parent.mkdir(parents=True, exist_ok=True)
        partial = base.tar.with_suffix(".partial.tar")
        try:
            stream([require("mmdebstrap"), *MMDEBSTRAP_OPTIONS,
                    f"--include={','.join(PACKAGES)}", SUITE, str(partial), *sources()],
                   "mmdebstrap (the base root filesystem)",
                   f"Check that apt reaches {MIRROR} (MILLSTREAM_IMAGE_MIRROR names another "
                   f"mirror)", started)
            partial.rename(base.tar)
        finally:
            partial.unlink(missing_ok=True)
    log(f"base: importing {base.tar.name} as {base.ref}", started)
    container = run([*buildah.cmd, "from", "scratch"], "buildah from scratch", "",
                    capture=True).strip()
    try:
        run([*buildah.cmd, "add", container, str(base.tar), "/"], "importing the base", "",
            capture=True)
        run([*buildah.cmd, "config", "--env",
             "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--cmd", "/bin/bash", container], "configuring the base", "", capture=True)
        run([*buildah.cmd, "commit", "--quiet", container, base.ref], "committing the base",
            "", capture=True)
    finally:
        subprocess.run([*buildah.cmd, "rm", container], capture_output=True, check=False)
    remove_other_bases(buildah, base)


def remove_other_bases(buildah: Buildah, base: Base) -> None:
    """A new base replaces the earlier ones: their tarballs and images go."""
    for tar in base.tar.parent.glob("base-*.tar"):
        if tar != base.tar:
            tar.unlink()
    proc = subprocess.run([*buildah.cmd, "images", "--json", "--filter",
                           "reference=localhost/millstream-base"],
                          capture_output=True, text=True, check=False)
    for image in json.loads(proc.stdout or "[]") if proc.returncode == 0 else []:
        for name in image.get("names") or []:
            if name != base.ref:
                subprocess.run([*buildah.cmd, "rmi", name], capture_output=True, check=False)


def ca_bundle() -> Path | None:
    """The CA bundle this host's pip trusts (a TLS-inspecting proxy's CA may be in it)."""
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def build(buildah: Buildah, base: Base, digest: str, tags: list[str], started: float) -> None:
    cmd = [*buildah.cmd, "bud", "--isolation", "chroot", "--layers", "-f", str(CONTAINERFILE),
           "--build-arg", f"BASE_IMAGE={base.ref}", "--label", f"{LABEL}={digest}"]
    bundle = ca_bundle()
    if bundle:
        cmd += ["--volume", f"{bundle}:{CA_MOUNT}:ro", "--build-arg", f"PIP_CERT={CA_MOUNT}"]
    for tag in tags:
        cmd += ["--tag", tag]
    log(f"building {tags[0]} (buildah bud; the dependencies' layer is cached until "
        f"pyproject.toml changes)", started)
    stream([*cmd, str(ROOT)], "buildah bud (the image)",
           "Read the step that failed above; pip needs PyPI (PIP_CERT for a proxy's CA)",
           started)


def remove_superseded(buildah: Buildah, digest: str) -> None:
    """Earlier builds of the image (untagged now) go; the layer cache stays."""
    proc = subprocess.run([*buildah.cmd, "images", "--json", "--filter", "dangling=true"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return
    for image in json.loads(proc.stdout):
        labels = buildah.image_labels(image["id"]) or {}
        if labels.get(LABEL) not in (None, digest):
            subprocess.run([*buildah.cmd, "rmi", image["id"]], capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="build even when up to date")
    parser.add_argument("--refresh-base", action="store_true",
                        help="make the base root filesystem again (Debian's security updates)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        buildah = Buildah(storage_driver())
        base = base_for(cache_dir())
        ensure_base(buildah, base, args.refresh_base, started)
        digest = inputs_digest(base)
        tags = [f"localhost/millstream:{version()}", "localhost/millstream:latest"]
        labels = buildah.image_labels(tags[0])
        built = args.force or args.refresh_base or (labels or {}).get(LABEL) != digest
        if built:
            build(buildah, base, digest, tags, started)
            remove_superseded(buildah, digest)
        else:
            log(f"{tags[0]} is up to date (inputs {digest})", started)
        size = buildah.size(tags[0])
    except BuildError as exc:
        print(f"make image: {exc}", file=sys.stderr)
        return 1
    seconds = round(time.monotonic() - started, 1)
    log(f"{tags[0]}: {size}, {'built' if built else 'up to date'} in {seconds} s", started)
    print(json.dumps({"image": tags[0], "inputs": digest, "built": built, "size": size,
                      "seconds": seconds, "storage_driver": buildah.cmd[2],
                      "base": base.ref}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
