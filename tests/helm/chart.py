"""Run the real ``helm`` on ``helm/millstream`` and read what it renders.

helm is found at ``.tools/bin/helm`` (``make tools`` builds it from the Go module proxy)
or on PATH. Rendered YAML is parsed with duplicate keys refused: PyYAML would keep the
last one silently, and the API server would then see something else than the chart says.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

__all__ = [
    "CHART",
    "PROFILES",
    "Rendered",
    "containers",
    "helm",
    "helm_binary",
    "render",
    "secret_values",
]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "millstream"
PROFILES = {path.name.removesuffix("-values.yaml"): path
            for path in sorted((CHART / "ci").glob("*-values.yaml"))}
RELEASE = "plant"


def helm_binary() -> str:
    """The helm that `make tools` put in .tools/bin, else the one on PATH; fails, never skips."""
    local = ROOT / ".tools" / "bin" / "helm"
    if local.is_file():
        return str(local)
    found = shutil.which("helm")
    if found:
        return found
    pytest.fail("helm is not in .tools/bin nor on PATH: run `make test` (or `make tools`), "
                "which builds it from the Go module proxy")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """helm ARGS on the chart's folder; the caller checks returncode and output."""
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, check=False)


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping with the same key twice."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


@dataclass(frozen=True)
class Rendered:
    """The manifests of one `helm template`, in order."""

    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"no {kind} named {name!r} in {self.names(kind)}")

    def names(self, kind: str) -> list[str]:
        return [d["metadata"]["name"] for d in self.of_kind(kind)]

    def workloads(self) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] in ("Deployment", "StatefulSet")]


def render(*values_files: Path, sets: tuple[str, ...] = ()) -> Rendered:
    """`helm template` with these values; AssertionError with helm's words on failure."""
    args = ["template", RELEASE, str(CHART), "--namespace", "millstream"]
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    result = helm(*args)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    docs = [d for d in yaml.load_all(result.stdout, Loader=_StrictLoader) if d]
    return Rendered(docs)


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container and init container of a workload or a bare Pod."""
    spec = doc["spec"]
    pod = spec["template"]["spec"] if "template" in spec else spec
    yield from pod.get("initContainers", [])
    yield from pod["containers"]


def secret_values(rendered: Rendered) -> dict[str, str]:
    """Every Secret value the chart made, by ``secret/key``: decoded, or as base64 for
    binary ones (a DER certificate is given to the chart in base64)."""
    values: dict[str, str] = {}
    for secret in rendered.of_kind("Secret"):
        name = secret["metadata"]["name"]
        for key, encoded in (secret.get("data") or {}).items():
            try:
                values[f"{name}/{key}"] = base64.b64decode(encoded).decode()
            except UnicodeDecodeError:
                values[f"{name}/{key}"] = encoded
        for key, value in (secret.get("stringData") or {}).items():
            values[f"{name}/{key}"] = value
    return values
