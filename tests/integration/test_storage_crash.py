"""What SQLiteStorage reported committed survives ``kill -9``; group commit really groups."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from thingcore.storage import SQLiteStorage

pytestmark = pytest.mark.integration

# The child writes without end and reports each commit it has awaited; the parent kills it.
CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from thingcore.storage import SQLiteStorage

    async def main(path, mode):
        s = SQLiteStorage(path)
        await s.open()
        await s.save_session("dev", b"meta")
        out = sys.stdout
        k = 0

        def add(seq):
            body = seq.to_bytes(8, "big") * 25
            mid = s.next_message_id()
            return s.add_messages("dev", [(seq, mid, b"d")], (mid, body, len(body)))

        while True:
            if mode == "sequential":
                await add(k)
                await s.set_retained(f"t/{k % 50}", str(k).encode())
                out.write(f"committed {k}\\n")
                out.flush()
                k += 1
            else:  # many writes in flight at once, reported when each group is committed
                futures = [add(k + i) for i in range(200)]
                await asyncio.gather(*futures)
                k += 200
                out.write(f"committed {k - 1}\\n")
                out.flush()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.mark.parametrize("mode", ["sequential", "grouped"])
async def test_kill_9_loses_nothing_reported_committed(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "thingcore.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), mode, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    last = -1
    target = 500 if mode == "sequential" else 5000
    try:
        while last < target:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line, "child exited early"
            last = int(line.split()[1])
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the child never stops on its own
    # Lines already in the pipe were printed after their commit, so they count too.
    rest = await proc.stdout.read()
    for line in rest.splitlines():
        if line.startswith(b"committed "):
            last = int(line.split()[1])
    assert await proc.wait() == -signal.SIGKILL

    s = SQLiteStorage(path)
    await s.open()
    try:
        [session] = await s.load_sessions()
        stored = await s.load_messages("dev", -1, session.queued, 1 << 40)
        seqs = [m.seq for m in stored]
        assert seqs[: last + 1] == list(range(last + 1)), f"lost messages reported committed (last={last})"
        for m in stored[: last + 1]:
            assert m.body == m.seq.to_bytes(8, "big") * 25
        if mode == "sequential":
            retained = dict(await s.load_retained())
            # the last reported retained write for each topic (or a later one) is there
            for k in range(max(0, last - 49), last + 1):
                assert int(retained[f"t/{k % 50}"]) >= k
    finally:
        await s.close()


async def test_group_commit_batches_writes(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "thingcore.db")
    await s.open()
    try:
        s.save_session("c", b"m")
        n = 20_000
        futures = [s.add_messages("c", [(i, i + 1, b"d")], (i + 1, b"x" * 200, 200)) for i in range(n)]
        await s.flush()
        assert all(f.done() and f.result() is None for f in futures)
        stats = s.stats
        assert stats.operations == n + 1
        assert stats.max_batch > 1
        assert stats.max_batch <= s.max_batch
        # group commit: far fewer transactions than writes (n / max_batch at best)
        assert stats.commits < stats.operations / 10, stats
        print(f"group commit: {stats.operations} writes in {stats.commits} transactions, largest {stats.max_batch}")
        [session] = await s.load_sessions()
        assert session.queued == n
    finally:
        await s.close()


async def test_max_batch_bounds_transactions(tmp_path: Path) -> None:
    s = SQLiteStorage(tmp_path / "thingcore.db", max_batch=100)
    await s.open()
    try:
        for i in range(1000):
            s.set_retained(f"t/{i}", b"r")
        await s.flush()
        assert s.stats.max_batch <= 100
        assert s.stats.commits >= 10
        assert len(await s.load_retained()) == 1000
    finally:
        await s.close()
