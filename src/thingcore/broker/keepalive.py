"""Every connection's keep-alive deadline in one timer wheel, not one event-loop timer per connection.

A uvloop ``TimerHandle`` with its bound callback costs about 630 bytes for each idle connection; here a
connection costs a slot in the set of the tick its deadline falls in. Deadlines are rounded up to the next
tick of ``RESOLUTION`` seconds, so a silent client is closed at most that much later than 1.5 times its
keep-alive, never earlier. The wheel's one timer runs only while some connection has a deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("thingcore.broker")

RESOLUTION = 0.5  # seconds between ticks: how late a keep-alive timeout may be noticed


class _Watched(Protocol):
    def keep_alive_due(self) -> None: ...


class KeepAliveWheel:
    __slots__ = ("_buckets", "_handle", "_loop", "_next")

    def __init__(self) -> None:
        self._buckets: dict[int, set[_Watched]] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next = 0  # the first tick not processed yet

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def schedule(self, conn: _Watched, deadline: float) -> int:
        """Call ``conn.keep_alive_due()`` once the loop's clock passes ``deadline``; returns the tick to cancel."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._handle is None:  # idle until now: start from the present tick
            self._next = int(loop.time() // RESOLUTION)
            self._handle = loop.call_at((self._next + 1) * RESOLUTION, self._tick)
        tick = max(-int(-deadline // RESOLUTION), self._next)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
        bucket.add(conn)
        return tick

    def cancel(self, conn: _Watched, tick: int) -> None:
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.discard(conn)
            if not bucket:
                del self._buckets[tick]

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        current = int(loop.time() // RESOLUTION)
        buckets = self._buckets
        if current - self._next < 64:
            ticks = [t for t in range(self._next, current + 1) if t in buckets]
        else:  # the loop was held up for a while: look only at the ticks that have connections
            ticks = sorted(t for t in buckets if t <= current)
        self._next = current + 1
        for t in ticks:
            for conn in buckets.pop(t):
                try:
                    conn.keep_alive_due()  # may schedule again (at a tick >= self._next)
                except Exception:  # one connection's bug must not stop the others' keep-alive
                    log.exception("keep-alive check failed")
        if buckets:
            self._handle = loop.call_at((current + 1) * RESOLUTION, self._tick)
        else:
            self._handle = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._buckets.clear()
