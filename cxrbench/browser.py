"""Headless Chromium for looking at the pages as a person would: the browser test and the screenshots.

Uses the system's Chromium (Debian's ``chromium`` package, ``/usr/bin/chromium``; ``CXRBENCH_CHROMIUM``
names another binary) through playwright, never a browser playwright downloads. The browser runs with a
fresh profile and no network features (no sync, updates or background requests).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: (name, viewport width, viewport height, is_mobile): a phone and a desktop.
VIEWPORTS = (("390", 390, 844, True), ("1400", 1400, 900, False))


def find_chromium() -> str | None:
    """The Chromium binary to use, or None when none is installed."""
    named = os.environ.get("CXRBENCH_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    found = shutil.which("chromium")
    return found


@contextmanager
def chromium(width: int = 1400, height: int = 900, mobile: bool = False) -> Iterator[Any]:
    """A playwright browser context of the given viewport (device scale 1: 100% zoom), closed after use."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise FileNotFoundError("no Chromium found: apt-get install chromium, or set CXRBENCH_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="cxrbench-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_FLAGS),
            viewport={"width": width, "height": height},
            device_scale_factor=1,
            is_mobile=mobile,
            has_touch=mobile,
            offline=True,
        )
        try:
            yield context
        finally:
            context.close()
