"""Reading a stage's health endpoints the way a probe and Prometheus do."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "get", "scrape", "value"]

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]  # (sample name, labels) -> value


def get(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    """HTTP status and body (JSON decoded when it is JSON); raises OSError if nobody answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            code, body, kind = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        code, body, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return code, json.loads(body) if "json" in kind else body.decode()


def scrape(base: str) -> Scrape:
    """Every sample of ``base``/metrics, parsed with prometheus-client's own parser."""
    code, text = get(base + "/metrics")
    assert code == 200, (base, code, text)
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Scrape, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)
