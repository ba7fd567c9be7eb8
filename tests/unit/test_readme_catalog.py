"""The catalog examples in the README's 'Connect your plant' load as they are written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.catalog import load_catalog

README = Path(__file__).resolve().parents[2] / "README.md"


def _examples() -> list[str]:
    text = README.read_text()
    start = text.index("## Connect your plant")
    section = text[start: text.index("\n## ", start + 1)]
    return re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)


def test_the_section_has_examples() -> None:
    assert len(_examples()) >= 3


@pytest.mark.parametrize("block", _examples())
def test_readme_catalog_example_loads(block: str, tmp_path: Path) -> None:
    doc: dict[str, Any] = {"enterprise": "acme", "site": "plant1", "machines": [],
                           **yaml.safe_load(block)}
    for machine in doc["machines"]:
        if machine.get("register_map"):  # the vendor map the example names
            (tmp_path / machine["register_map"]).write_text(
                "name,table,address,type\nflow,input,100,float32\n")
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(doc))
    catalog = load_catalog(path)
    assert catalog.sources
