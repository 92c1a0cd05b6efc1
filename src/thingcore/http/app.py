"""The one ASGI app on the HTTP port: health and metrics here, every API mounted as a router.

Each API lives in its own module and exposes ``router(server) -> APIRouter``; adding one is one line
in ``_ROUTERS``. Errors everywhere use AWS's shape (see :mod:`thingcore.http.errors`).
"""

from __future__ import annotations

import importlib
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

import thingcore
from thingcore.http.caller import anonymous_data_plane
from thingcore.http.errors import install_error_handlers
from thingcore.http.guard import HTTPGuard
from thingcore.http.metrics import make_registry, render

# module paths of the APIs, each with a `router(server)` factory; missing ones are skipped
_ROUTERS: list[str] = [
    "thingcore.http.dataplane",
    "thingcore.http.websocket",
    "thingcore.http.controlplane",
    "thingcore.http.admin",
    "thingcore.http.rules_api",
    "thingcore.http.data_api",
    "thingcore.http.shadow_api",
    "thingcore.http.outputs_api",
    "thingcore.http.dashboard",
]


def create_app(server: Any) -> FastAPI:
    """`server` is the running :class:`thingcore.server.Server` (broker, storage, services, settings)."""
    app = FastAPI(title="thingcore", version=thingcore.__version__,
                  description="thingcore: AWS IoT Core's model, self-hosted.")
    install_error_handlers(app)
    # outermost after Starlette's error middleware: proxies, Host, Origin, credentials, body size
    # anonymous HTTP callers: [http] allow_anonymous, not MQTT's [auth] setting
    app.add_middleware(HTTPGuard, settings=server.settings, anonymous_admitted=anonymous_data_plane(server.settings))
    registry = make_registry(server.broker, *getattr(server, "metric_collectors", ()))

    @app.get("/healthz", summary="200 once every listener is up, 503 before and while shutting down")
    async def healthz() -> JSONResponse:
        if server.ready:
            return JSONResponse({"status": "ok", "listeners": server.listener_info()})
        return JSONResponse({"status": "starting" if not server.stopping else "stopping"}, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    for path in _ROUTERS:
        module = importlib.import_module(path)
        app.include_router(module.router(server))
        # a module may translate its own domain errors to AWS error responses once, for all its routes
        for exc_type, handler in getattr(module, "exception_handlers", {}).items():
            app.add_exception_handler(exc_type, handler)
    return app
