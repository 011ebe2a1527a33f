"""A REST client for tests: the real app, with a real token of a user with the given role."""

from __future__ import annotations

import contextlib

from fastapi.testclient import TestClient

from conveyor.api import create_app
from conveyor.errors import Conflict
from conveyor.workspace import Workspace


def token_for(ws: Workspace, role: str = "admin", user: str | None = None) -> str:
    """A new token of ``user`` (default ``test-<role>``), adding the user with ``role`` if needed."""
    name = user or f"test-{role}"
    with contextlib.suppress(Conflict):
        ws.identities.add_user(name, role)
    return ws.identities.create_token(name).secret


def api_client(ws: Workspace, role: str | None = "admin", *, user: str | None = None) -> TestClient:
    """A TestClient on ``create_app(ws)`` at a loopback Host, sending a token of a ``role`` user (none if None)."""
    headers = {} if role is None else {"Authorization": f"Bearer {token_for(ws, role, user)}"}
    return TestClient(create_app(ws), base_url="http://127.0.0.1", headers=headers)
