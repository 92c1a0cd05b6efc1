"""The browser dashboard: ``/`` serves its page, ``/ui/...`` its ES modules, styles and vendored libraries.

The app is static files inside the package (``thingcore/dashboard``), so ``pip install`` ships it and
users need no build step. Files are read from disk on each request (the page is small, and an edited
file shows on reload while developing); paths are resolved inside the dashboard folder only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from thingcore.http.errors import AWSError

ROOT = (Path(__file__).resolve().parent.parent / "dashboard").resolve()
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# revalidate every time: a new thingcore version must not run with an old cached module
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _file(relative: str) -> FileResponse:
    path = (ROOT / relative).resolve()
    if not path.is_relative_to(ROOT) or not path.is_file() or path.suffix not in _TYPES:
        raise AWSError(404, "ResourceNotFoundException", f"no dashboard file {relative}")
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)


def router(server: Any) -> APIRouter:
    api = APIRouter(tags=["dashboard"], include_in_schema=False)

    @api.get("/")
    async def index() -> FileResponse:
        return _file("index.html")

    @api.get("/ui/{path:path}")
    async def asset(path: str) -> FileResponse:
        return _file(path)

    return api
