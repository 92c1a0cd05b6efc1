"""Headless Chromium for the dashboard tests: Debian's `chromium` driven by Playwright (no `playwright install`).

The background-networking flags matter here: without them Chromium tries to reach Google's services and this
machine's closed network refuses them, which shows up as failed page loads.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def require_chromium() -> None:
    """Skip, naming what is missing, when the browser or its driver is absent."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is absent: install the Debian package chromium to run the dashboard tests")
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("the Python package playwright is absent (pip install -e '.[test]')")


@contextmanager
def chromium_context(**context_options: object) -> Iterator[object]:
    """A fresh browser (own user data dir) and one context; closed afterwards."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="thingcore-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1280, "height": 860}, **context_options)
        try:
            yield context
        finally:
            context.close()


def screenshot(page: object, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)  # type: ignore[attr-defined]
    return path
