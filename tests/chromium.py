"""Debian's chromium, driven by Playwright from PyPI, for the browser tests.

Never ``playwright install``: it downloads browser builds, which fails offline. ``make dev``
apt-installs ``chromium``; the tests skip without it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_context(prefix: str, **options: Any) -> Iterator[Any]:
    """A headless persistent browser context (its own profile folder), closed and removed afterwards.

    ``options`` go to Playwright's ``launch_persistent_context`` (e.g. ``viewport``).
    """
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: `make dev` installs Debian's chromium")
    user_data_dir = tempfile.mkdtemp(prefix=prefix)
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, **options
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(user_data_dir, ignore_errors=True)
