"""The control-plane REST API: a FastAPI app whose routers are thin adapters over the services.

Every router takes the workspace from ``Depends(workspace)``, calls one service method, and returns its
typed result; errors are ``ConveyorError`` subclasses turned into JSON by one handler, with the status
the error kind declares (see ``conveyor.errors``). Every route goes through one auth dependency
(``_auth.authorize``) that checks the caller's token against the route's permission (``_permissions``);
the browser guard (Host allow-list, cross-site refusal) wraps the whole app.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor._json import dumps
from conveyor._version import __version__
from conveyor.errors import ConveyorError
from conveyor.governance import local_principal
from conveyor.workspace import Workspace

__all__ = ["API_PREFIX", "ERROR_RESPONSES", "api_routes", "create_app"]

API_PREFIX = "/api/v1"


class ORJSONResponse(JSONResponse):
    """JSON responses rendered with orjson (datetimes as ISO 8601, dataclasses as objects)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(BaseModel):
    """Every error the API answers: a stable ``code``, a message that names the fix, and details."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


#: What any route may answer besides its success, declared on every operation so the document tells the truth.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Bad input (a malformed value, reference or Host header)"),
    401: _error("No token, or a malformed, unknown, expired or revoked one"),
    403: _error("The caller's role lacks the permission, or a cross-site browser request"),
    404: _error("An unknown name, version or id (with a suggestion)"),
    409: _error("The request contradicts what exists"),
    413: _error("The request body is too large"),
    422: _error("A request body or spec that breaks its schema, or user code that failed"),
    502: _error("A serving process failed to start or answer"),
    503: _error("The metadata database or object store cannot be reached"),
}


def create_app(
    ws: Workspace,
    *,
    auth: Literal["token", "none"] = "token",
    hosts: frozenset[str] | None = None,
) -> FastAPI:
    """The REST API over one open workspace (the caller owns and closes the workspace).

    Args:
        ws: the workspace served.
        auth: ``token`` (every route but health needs a token) or ``none`` (everyone acts as the local OS
            user; ``conveyor server --no-auth`` allows it on loopback only).
        hosts: the Host names the server answers to; default: loopback names.
    """
    from conveyor.api import (
        batch,
        data,
        datastores,
        endpoints,
        governance,
        health,
        lineage,
        models,
        monitor,
        pipelines,
        runs,
        train,
    )
    from conveyor.api._auth import BrowserGuard, allowed_hosts, authorize
    from conveyor.api._permissions import permission_for

    app = FastAPI(
        title="Conveyor",
        version=__version__,
        description="Control plane of a Conveyor workspace: data, pipelines, runs, models, endpoints, users, "
        "audit and secrets. Send `Authorization: Bearer <token>` (from `conveyor tokens create`).",
        default_response_class=ORJSONResponse,
        docs_url=None,  # served by the studio with local assets (no CDN): see conveyor.studio
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.workspace = ws
    app.state.auth = auth
    app.state.local_user = local_principal("api")  # who --no-auth callers act as

    @app.exception_handler(ConveyorError)
    async def conveyor_error(request: Request, exc: ConveyorError) -> Any:
        from conveyor.studio._app import error_page

        page = error_page(request, exc)
        if page is not None:
            return page
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return ORJSONResponse({"error": exc.to_dict()}, status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> ORJSONResponse:
        problems = [
            {"where": ".".join(str(part) for part in error.get("loc", ())), "problem": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        first = problems[0] if problems else {"where": "request", "problem": "invalid"}
        message = f"Invalid request: {first['where']}: {first['problem']}"
        if len(problems) > 1:
            message += f" (and {len(problems) - 1} more)"
        body = {"error": {"code": "invalid_request", "message": message, "details": {"problems": problems}}}
        return ORJSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        # FastAPI's own refusals (a body that is not JSON, ...) in the same shape as every other error.
        code = {400: "bad_input", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        body = {"error": {"code": code, "message": str(exc.detail)}}
        return ORJSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    # Health answers without a token (load balancers, probes); everything else goes through authorize.
    app.include_router(health.router, prefix=API_PREFIX, responses={503: ERROR_RESPONSES[503]})
    routers = [m.router for m in (data, datastores, runs, models, endpoints, pipelines, train, batch, monitor, lineage)]
    routers.append(monitor.monitors)
    for router in (health.workspace_router, *routers, governance.router):
        app.include_router(router, prefix=API_PREFIX, dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)
    from conveyor.studio import add_studio

    add_studio(app)  # the web pages, and /docs and /redoc without a CDN
    _errors_are_json(app)
    missing = [f"{method} {path}" for method, path in api_routes(app) if permission_for(method, path) is None]
    if missing:
        raise RuntimeError(f"Routes without a permission rule in conveyor.api._permissions: {', '.join(missing)}")
    app.add_middleware(BrowserGuard, hosts=hosts or allowed_hosts("127.0.0.1"))
    return app


def _errors_are_json(app: FastAPI) -> None:
    """Declare every error response as JSON, also on routes whose success is HTML (FastAPI would give the
    error the route's media type)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                for status, response in operation.get("responses", {}).items():
                    if status[:1] in ("4", "5"):
                        response["content"] = error
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every ``(method, full path)`` the app routes under ``/api/v1``."""
    found: list[tuple[str, str]] = []
    for route in app.routes:
        contexts = getattr(route, "effective_route_contexts", None)  # FastAPI >= 0.16x: included routers
        for item in contexts() if callable(contexts) else [route]:
            path, methods = getattr(item, "path", None), getattr(item, "methods", None)
            if isinstance(path, str) and methods and path.startswith(API_PREFIX):
                found.extend((str(method), path) for method in sorted(methods))
    return found
