"""``/api/v1/health``: is the server up, and can it reach its metadata database."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter

from conveyor._version import __version__
from conveyor.api._deps import WorkspaceDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Server and metadata-store health")
def health(ws: WorkspaceDep) -> dict[str, Any]:
    """``{"status": "ok", "version", "workspace"}``; 503 when the metadata database does not answer."""
    with ws.store.read() as session:
        session.execute(sa.text("SELECT 1"))
    return {"status": "ok", "version": __version__, "workspace": ws.describe()}
