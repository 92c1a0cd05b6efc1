"""The one ASGI app on the HTTP port. This issue serves `/healthz` and `/metrics`; later issues
mount the AWS data plane, the control plane, the admin API, `/mqtt` and the dashboard here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

import thingcore
from thingcore.http.metrics import make_registry, render


def create_app(server: Any) -> FastAPI:
    """`server` is the running :class:`thingcore.server.Server` (broker, readiness, settings)."""
    app = FastAPI(title="thingcore", version=thingcore.__version__)
    registry = make_registry(server.broker)

    @app.get("/healthz", summary="200 once every listener is up, 503 before and while shutting down")
    async def healthz() -> JSONResponse:
        if server.ready:
            return JSONResponse({"status": "ok", "listeners": server.listener_info()})
        return JSONResponse({"status": "starting" if not server.stopping else "stopping"}, status_code=503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    return app
