"""Shared fixtures: a real thingcore server process per test module, and a factory for custom ones."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server import ThingcoreProcess


@pytest.fixture(scope="module")
def thingcore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThingcoreProcess]:
    """A server with default settings, shared by the tests of one module (use unique topics)."""
    with ThingcoreProcess(tmp_path_factory.mktemp("thingcore")) as tc:
        yield tc


@pytest.fixture
def thingcore_factory(tmp_path: Path) -> Iterator[Callable[..., ThingcoreProcess]]:
    """Start servers with a custom configuration; all are stopped after the test."""
    started: list[ThingcoreProcess] = []

    def make(config: dict[str, Any] | None = None, **kwargs: Any) -> ThingcoreProcess:
        tc = ThingcoreProcess(tmp_path / f"server{len(started)}", config, **kwargs)
        started.append(tc)
        return tc.start()

    yield make
    for tc in started:
        try:
            tc.stop()
        finally:
            tc.kill()


def require_tool(name: str) -> str:
    """Skip (naming the missing tool) when an external program is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian package providing it is needed)")
    return path
