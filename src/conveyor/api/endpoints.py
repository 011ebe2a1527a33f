"""``/api/v1/endpoints``: online endpoints and their deployments."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor.api._deps import WorkspaceDep
from conveyor.serve import Endpoint

router = APIRouter(prefix="/endpoints", tags=["endpoints"])


@router.get("", summary="List endpoints")
def list_endpoints(ws: WorkspaceDep) -> list[Endpoint]:
    return ws.endpoints.list()


@router.get("/{name}", summary="One endpoint with its deployments")
def get_endpoint(name: str, ws: WorkspaceDep) -> Endpoint:
    return ws.endpoints.get(name)
