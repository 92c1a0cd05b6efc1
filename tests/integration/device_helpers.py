"""Helpers for the device SDK tests: thread-safe inboxes for callbacks, and quick constructors."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from tests.integration.mqtt_helpers import uid

from thingcore.device import Backoff, Device

__all__ = ["FAST", "TIMEOUT", "Inbox", "device", "port_for", "uid", "wait_until"]

TIMEOUT = 10.0
FAST = Backoff(initial=0.05, maximum=0.5, reset_after=30.0)  # reconnect quickly in tests


class Inbox:
    """A callback that queues what it is called with; ``get`` waits (and fails the test on timeout)."""

    def __init__(self, name: str = "inbox") -> None:
        self.name = name
        self._q: queue.Queue[Any] = queue.Queue()

    def __call__(self, item: Any) -> None:
        self._q.put(item)

    def get(self, timeout: float = TIMEOUT) -> Any:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: nothing arrived within {timeout} s") from None

    def take(self, n: int, timeout: float = TIMEOUT) -> list[Any]:
        return [self.get(timeout) for _ in range(n)]

    def until(self, predicate: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
        """Skip items until one satisfies ``predicate``."""
        while True:
            item = self.get(timeout)
            if predicate(item):
                return item

    def empty(self) -> bool:
        return self._q.empty()


def port_for(tc: Any, transport: str) -> int:
    return tc.mqtt_port if transport == "mqtt" else tc.http_port


def device(tc: Any, transport: str = "mqtt", client_id: str | None = None, **options: Any) -> Device:
    """A Device for the test server (not connected yet)."""
    options.setdefault("backoff", FAST)
    return Device(tc.host, client_id or uid(f"dev-{transport}"), transport=transport, port=port_for(tc, transport),
                  **options)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it holds; fail the test naming ``what`` if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.01)
