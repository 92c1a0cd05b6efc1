"""CloudWatch Logs' counterpart: one JSON-lines file per log group under ``<data dir>/logs``.

Each line is ``{"logGroupName", "timestamp" (ms), "message"}``. File names are the group names
percent-encoded (``/aws/iot/x`` -> ``%2Faws%2Fiot%2Fx.jsonl``). Appends run in the destinations' thread pool;
deliveries in flight together are appended in one write (:class:`LoopBatcher`), in no guaranteed order.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from thingcore.destinations.local import LoopBatcher


def log_file(root: Path, group: str) -> Path:
    return root / (quote(group, safe="") + ".jsonl")


class LogGroups:
    def __init__(self, hub: Any, root: Path, stdout: bool) -> None:
        self.hub = hub
        self.root = root
        self.stdout = stdout
        self._batchers: dict[str, LoopBatcher[bytes]] = {}

    async def append(self, group: str, events: list[tuple[int, str]]) -> None:
        """Append ``(timestamp ms, message)`` events; raises OSError when the disk refuses."""
        data = b"".join(orjson.dumps({"logGroupName": group, "timestamp": ts, "message": msg}) + b"\n"
                        for ts, msg in events)
        batcher = self._batchers.get(group)
        if batcher is None:
            batcher = self._batchers[group] = LoopBatcher(self.hub, functools.partial(self._write, group))
        await batcher.write(data)

    def _write(self, group: str, chunks: list[bytes]) -> None:
        data = b"".join(chunks)
        self.root.mkdir(parents=True, exist_ok=True)
        with open(log_file(self.root, group), "ab") as f:
            f.write(data)
        if self.stdout:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

    def read(self, group: str) -> list[dict]:
        path = log_file(self.root, group)
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]
