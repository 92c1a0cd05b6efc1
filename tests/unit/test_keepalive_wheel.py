"""The keep-alive wheel: one timer for every connection's deadline, never early, at most a tick late."""

from __future__ import annotations

import asyncio

from thingcore.broker.keepalive import RESOLUTION, KeepAliveWheel


class _Conn:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.due_at: list[float] = []

    def keep_alive_due(self) -> None:
        self.due_at.append(self.loop.time())


def test_due_after_the_deadline_never_before_and_cancel_takes_it_out() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        wheel = KeepAliveWheel()
        now = loop.time()
        early, late, cancelled = _Conn(loop), _Conn(loop), _Conn(loop)
        wheel.schedule(early, now + 0.3)
        wheel.schedule(late, now + 1.1)
        tick = wheel.schedule(cancelled, now + 0.3)
        wheel.cancel(cancelled, tick)
        assert len(wheel) == 2
        await asyncio.sleep(1.1 + RESOLUTION + 0.2)
        assert len(early.due_at) == 1 and now + 0.3 <= early.due_at[0] <= now + 0.3 + RESOLUTION + 0.1
        assert len(late.due_at) == 1 and now + 1.1 <= late.due_at[0] <= now + 1.1 + RESOLUTION + 0.1
        assert cancelled.due_at == []
        assert len(wheel) == 0 and wheel._handle is None  # no timer left running for nobody
        wheel.close()

    asyncio.run(run())


def test_a_connection_scheduled_again_from_its_check_is_checked_again() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        wheel = KeepAliveWheel()

        class Again(_Conn):
            def keep_alive_due(self) -> None:
                super().keep_alive_due()
                if len(self.due_at) < 3:
                    wheel.schedule(self, self.loop.time() + 0.1)

        conn = Again(loop)
        wheel.schedule(conn, loop.time())
        await asyncio.sleep(4 * RESOLUTION + 0.3)
        assert len(conn.due_at) == 3
        assert wheel._handle is None

    asyncio.run(run())
