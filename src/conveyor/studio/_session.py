"""Who is looking at the studio: a session cookie holding the caller's API token, and CSRF tokens for forms.

Logging in checks a token (``conveyor tokens create``) with the same identities the REST API uses and keeps it in
a cookie the page's scripts cannot read (``HttpOnly``) and that no other site's page can send (``SameSite=Strict``;
the browser guard also refuses cross-site requests). Every form carries a CSRF token derived from the session
(HMAC-SHA256 of the token), checked before anything changes. With ``conveyor server --no-auth`` (loopback only)
everyone acts as the local OS user, as on the REST API.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from conveyor.errors import Forbidden, Unauthorized
from conveyor.governance import Principal, role_allows
from conveyor.governance._context import set_principal

if TYPE_CHECKING:
    from fastapi import Request

__all__ = ["COOKIE", "csrf_token", "current_principal", "require_form"]

COOKIE = "conveyor_session"


class LoginNeeded(Unauthorized):
    """No session (or an expired, revoked one): the page sends the browser to the login form."""


def _token(request: Request) -> str | None:
    value = request.cookies.get(COOKIE)
    return value if value else None


def current_principal(request: Request, action: str) -> Principal:
    """The caller of a studio request.

    Raises:
        LoginNeeded: no session cookie, or its token is no longer valid.
    """
    if request.app.state.auth == "none":
        local: Principal = request.app.state.local_user
        principal = local.doing(action)
    else:
        token = _token(request)
        if token is None:
            raise LoginNeeded("Log in with an API token to see the studio.")
        try:
            caller = request.app.state.workspace.identities.authenticate(token)
        except Unauthorized as exc:
            raise LoginNeeded(f"Your session ended ({exc.message}); log in again.") from exc
        address = request.client.host if request.client else "unknown"
        principal = Principal(
            name=caller.name, role=caller.role, source=f"studio:{address}", action=action, user_id=caller.user_id
        )
    set_principal(principal)
    return principal


def csrf_token(request: Request) -> str:
    """The CSRF token of this session (the same for every form of the session)."""
    secret = _token(request) or "no-auth-session"
    return hmac.new(secret.encode(), b"conveyor-studio-csrf", hashlib.sha256).hexdigest()[:40]


def require_form(request: Request, principal: Principal, given: str | None, permission: str) -> None:
    """Check a form submission: its CSRF token, then the caller's permission.

    Raises:
        Forbidden: a missing or wrong CSRF token, or a role without ``permission``.
    """
    if not given or not hmac.compare_digest(given, csrf_token(request)):
        raise Forbidden("This form is stale or did not come from the studio (CSRF check failed); reload the page.")
    if not role_allows(principal.role, permission):
        raise Forbidden(
            f"User {principal.name!r} has the role {principal.role!r}, which may not do this (permission "
            f"{permission!r})."
        )
