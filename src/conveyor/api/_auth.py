"""Who may call what: the one auth dependency every router goes through, and the browser guard.

``authorize`` finds the route's permission (``_permissions``), reads ``Authorization: Bearer <token>``,
checks the token and the role, and sets the principal that the audit log and ``created_by`` record. With
``auth="none"`` (``conveyor server --no-auth``, loopback only) every caller acts as the local OS user.

``BrowserGuard`` stops a web page the user happens to visit from using a server on their machine: a Host
header that is not one of the server's names (DNS rebinding) gets 400, and a request a browser marks as
coming from another site (``Origin`` or ``Sec-Fetch-Site``) gets 403. There is no CORS: the API does not
answer cross-origin reads, and nothing is accepted from a cookie, so a cross-site form cannot carry a token.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from conveyor._json import dumps
from conveyor.api._permissions import permission_for
from conveyor.errors import Forbidden, Unauthorized
from conveyor.governance import PERMISSIONS, Principal, role_allows
from conveyor.governance._context import set_principal

__all__ = ["BrowserGuard", "CallerDep", "allowed_hosts", "authorize", "require"]

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API token from `conveyor tokens create` (or printed once by `conveyor init`).",
)


def _route_path(request: Request) -> str:
    from conveyor.api._app import API_PREFIX

    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):  # pragma: no cover - FastAPI always sets the matched route
        raise RuntimeError("The matched route is unknown; cannot decide its permission.")
    # FastAPI keeps the router's own path on the route; every router is included under API_PREFIX.
    return path if path.startswith(API_PREFIX) else API_PREFIX + path


async def authorize(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller of this request, checked against the route's permission.

    Raises:
        Unauthorized: no token, or a token that is malformed, unknown, expired or revoked.
        Forbidden: the caller's role does not hold the route's permission.
    """
    path = _route_path(request)
    permission = permission_for(request.method, path)
    if permission is None:  # pragma: no cover - create_app refuses to start with such a route
        raise Forbidden(f"{request.method} {path} has no permission rule; refusing it.")
    action = f"{request.method} {path}"
    address = request.client.host if request.client else "unknown"
    mode: str = request.app.state.auth
    if mode == "none":
        local: Principal = request.app.state.local_user
        principal = local.doing(action)
    else:
        if credentials is None:
            raise Unauthorized(
                f"{action} needs a token: send the header 'Authorization: Bearer <token>' with a token from "
                "`conveyor tokens create`."
            )
        caller = request.app.state.workspace.identities.authenticate(credentials.credentials)
        principal = Principal(
            name=caller.name, role=caller.role, source=f"api:{address}", action=action, user_id=caller.user_id
        )
        require(principal, permission)
    set_principal(principal)
    return principal


CallerDep = Annotated[Principal, Depends(authorize)]


def require(principal: Principal, permission: str) -> None:
    """Check one more permission inside a route (when the request asks for more than its rule covers).

    Raises:
        Forbidden: the caller's role does not hold it.
    """
    if not role_allows(principal.role, permission):
        raise Forbidden(_refusal(principal, permission))


def _refusal(principal: Principal, permission: str) -> str:
    what, roles = PERMISSIONS[permission]
    holders = ", ".join(sorted(roles))
    return (
        f"User {principal.name!r} has the role {principal.role!r}, which may not {what} (permission "
        f"{permission!r}, held by: {holders}). Ask an admin: `conveyor users role {principal.name} ROLE`."
    )


def allowed_hosts(bind_host: str, extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """The names a server answers to: loopback names, the bind address, and any the operator added."""
    hosts = {"127.0.0.1", "localhost", "::1", bind_host.strip("[]").lower()}
    hosts.update(h.strip("[]").lower() for h in extra)
    if bind_host in ("0.0.0.0", "::"):  # noqa: S104 - the wildcard is no name a client sends
        hosts.discard(bind_host)
        # Listening everywhere: the machine's own names and addresses are how clients will reach it.
        import contextlib
        import socket

        name = socket.gethostname()
        hosts.update({name.lower(), socket.getfqdn().lower()})
        with contextlib.suppress(OSError):
            hosts.update(socket.gethostbyname_ex(name)[2])
    return frozenset(hosts)


def _hostname(authority: str) -> str:
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1 : authority.find("]")] if "]" in authority else authority
    if authority.count(":") == 1:
        return authority.split(":", 1)[0]
    return authority


def _origin_host(origin: str) -> str | None:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(origin)
        return parts.hostname
    except ValueError:
        return None


class BrowserGuard:
    """ASGI middleware: Host allow-list (DNS rebinding) and cross-site request refusal (CSRF)."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = _hostname(headers.get("host", ""))
        if "*" not in self.hosts and host not in self.hosts:
            allowed = ", ".join(sorted(self.hosts))
            await _refuse(
                send,
                400,
                "bad_host",
                f"This server does not answer to the host {host or '(none)'!r} (allowed: {allowed}). Use one of "
                "those names, or start the server with --allowed-host NAME.",
            )
            return
        origin = headers.get("origin")
        if origin is not None:
            origin_host = _origin_host(origin)
            if origin_host is None or ("*" not in self.hosts and origin_host.lower() not in self.hosts):
                await _refuse(
                    send,
                    403,
                    "cross_origin",
                    f"Requests from web pages of other sites (Origin {origin!r}) are refused; call the API from a "
                    "script or the CLI with a token.",
                )
                return
        if headers.get("sec-fetch-site") == "cross-site":
            await _refuse(send, 403, "cross_origin", "Cross-site requests from a browser are refused.")
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = dumps({"error": {"code": code, "message": message}})
    headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
