"""Debian's Chromium, headless, driven by Playwright for Python: no browser is downloaded.

Launched with the flags this machine needs (no sandbox as root, no GPU, no background
networking: a closed network refuses Chromium's own connections) and a new, empty
profile folder each time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, sync_playwright

__all__ = ["CHROMIUM", "chromium"]

CHROMIUM = os.environ.get("MILLSTREAM_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium(profile: Path, width: int = 1440, height: int = 900) -> Iterator[BrowserContext]:
    """A browser context on a fresh profile in ``profile`` (created, must not exist)."""
    if not Path(CHROMIUM).exists():
        found = shutil.which("chromium")
        raise AssertionError(f"Debian's chromium is not at {CHROMIUM}"
                             + (f" (there is one at {found}: set MILLSTREAM_CHROMIUM)" if found
                                else "; `make setup` installs it (apt-get install chromium)"))
    profile.mkdir(parents=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": width, "height": height})
        try:
            yield context
        finally:
            context.close()
