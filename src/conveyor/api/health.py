"""``/api/v1/health``: is the server up and can it reach its metadata database (public, says nothing else);
``/api/v1/workspace``: where the workspace keeps things (for callers with a token)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter

from conveyor._version import __version__
from conveyor.api._deps import WorkspaceDep

router = APIRouter(tags=["health"])
workspace_router = APIRouter(tags=["health"])


@router.get("/health", summary="Server and metadata-store health (no token needed)")
def health(ws: WorkspaceDep) -> dict[str, Any]:
    """``{"status": "ok", "version"}``; 503 when the metadata database does not answer. Anyone may ask, so
    it names no path, URL or backend."""
    with ws.store.read() as session:
        session.execute(sa.text("SELECT 1"))
    return {"status": "ok", "version": __version__}


@workspace_router.get("/workspace", summary="Where the workspace keeps things (passwords masked)")
def workspace(ws: WorkspaceDep) -> dict[str, Any]:
    return {"version": __version__, "workspace": ws.describe()}
