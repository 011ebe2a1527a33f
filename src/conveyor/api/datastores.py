"""``/api/v1/datastores``: where data comes from. Credentials are references (``env:VAR``), never values."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from conveyor.api._auth import CallerDep
from conveyor.api._deps import WorkspaceDep
from conveyor.data import Datastore, privileged_datastore_reason
from conveyor.errors import Forbidden
from conveyor.governance import role_allows

router = APIRouter(prefix="/datastores", tags=["datastores"])


class DatastoreRequest(BaseModel):
    name: str
    url: str = Field(description="Folder, fsspec URL or SQLAlchemy URL, without a password.")
    options: dict[str, Any] = {}
    credentials: dict[str, str] = Field(
        default={}, description='References such as {"password": "secret:wh-pw"} or {"password": "env:PGPASSWORD"}.'
    )
    description: str = ""
    check: bool = True


@router.get("", summary="List datastores")
def list_datastores(ws: WorkspaceDep) -> list[Datastore]:
    return ws.datastores.list()


@router.post("", summary="Register a datastore (on this machine or a private address: admins only)", status_code=201)
def add_datastore(body: DatastoreRequest, ws: WorkspaceDep, caller: CallerDep) -> Datastore:
    reason = privileged_datastore_reason(body.url, ws, options=body.options)
    if reason is not None and not role_allows(caller.role, "datastores.admin"):
        raise Forbidden(
            f"Only an admin may register this datastore: {reason}. Ask an admin to add it; you can then ingest "
            "from it (paths stay inside its root)."
        )
    return ws.datastores.add(
        body.name,
        body.url,
        options=body.options,
        credentials=body.credentials,
        description=body.description,
        check=body.check,
        relative_to=ws.settings.home,
    )


@router.get("/{name}", summary="One datastore")
def get_datastore(name: str, ws: WorkspaceDep) -> Datastore:
    return ws.datastores.get(name)


@router.delete("/{name}", summary="Remove a datastore", status_code=204)
def remove_datastore(name: str, ws: WorkspaceDep) -> Response:
    ws.datastores.remove(name)
    return Response(status_code=204)
