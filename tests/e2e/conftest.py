"""Fixtures for the browser tests: one thingcore server and one Chromium per module, a fresh page per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.e2e.browser import chromium_context, require_chromium
from tests.server import ThingcoreProcess


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    require_chromium()
    with chromium_context() as context:
        context.set_default_timeout(10_000)
        yield context


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    """A new tab; console errors from the page are collected in page.errors and fail the test."""
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # the browser logs every 4xx fetch as a console error; a thing without a shadow answers 404 by design
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.errors = errors
    yield page
    page.close()
    assert not errors, f"errors in the page: {errors}"


def open_dashboard(page: Any, tc: ThingcoreProcess, view: str = "live", query: str = "",
                   subscribed: tuple[str, ...] = ("#",)) -> Any:
    """Load the dashboard and wait until its MQTT connection is up and the broker granted these filters."""
    page.goto(f"http://{tc.host}:{tc.http_port}/{query}#{view}")
    page.wait_for_selector("#status[data-state='connected']")
    page.wait_for_selector(f"#view-{view}[data-ready]")
    wait_subscribed(page, *subscribed)
    return page


def wait_subscribed(page: Any, *filters: str) -> None:
    page.wait_for_function("fs => fs.every(f => window.thingcore.conn.acked.has(f))", arg=list(filters))
