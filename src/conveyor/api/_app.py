"""The control-plane REST API: a FastAPI app whose routers are thin adapters over the services.

Every router takes the workspace from ``Depends(workspace)``, calls one service method, and returns its
typed result; errors are ``ConveyorError`` subclasses turned into JSON by one handler, with the status
the error kind declares (see ``conveyor.errors``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from conveyor._json import dumps
from conveyor._version import __version__
from conveyor.errors import ConveyorError
from conveyor.workspace import Workspace

__all__ = ["API_PREFIX", "create_app"]

API_PREFIX = "/api/v1"


class ORJSONResponse(JSONResponse):
    """JSON responses rendered with orjson (datetimes as ISO 8601, dataclasses as objects)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


def create_app(ws: Workspace) -> FastAPI:
    """The REST API over one open workspace (the caller owns and closes the workspace)."""
    from conveyor.api import batch, data, datastores, endpoints, health, models, pipelines, runs, train

    app = FastAPI(
        title="Conveyor",
        version=__version__,
        description="Control plane of a Conveyor workspace: data, runs, models and endpoints.",
        default_response_class=ORJSONResponse,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.workspace = ws

    @app.exception_handler(ConveyorError)
    async def conveyor_error(_: Request, exc: ConveyorError) -> ORJSONResponse:
        return ORJSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)

    for module in (health, data, datastores, runs, models, endpoints, pipelines, train, batch):
        app.include_router(module.router, prefix=API_PREFIX)
    return app
