"""``/api/v1/data``: data assets and versions, ingestion (upload or from a datastore), rows, SQL."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from conveyor._json import dumps
from conveyor.api._auth import CallerDep, require
from conveyor.api._deps import WorkspaceDep
from conveyor.data import FORMATS, DataAsset, DataVersion
from conveyor.errors import BadInput

router = APIRouter(prefix="/data", tags=["data"])


class IngestOutcome(BaseModel):
    name: str
    version: int
    created: bool = Field(description="False when the content was already the latest version's.")
    rows: int
    hash: str
    notes: list[str] = []


class IngestRequest(BaseModel):
    """Ingest from a datastore: a file path in it, or a SQL query (optionally incremental)."""

    store: str
    path: str | None = None
    query: str | None = None
    incremental_column: str | None = None
    format: str | None = None
    description: str = ""


class SQLRequest(BaseModel):
    query: str = Field(description='DuckDB SQL; assets are tables of their latest version, "name:3" a version.')
    limit: int | None = Field(default=1000, ge=1, le=1_000_000)
    save_as: str | None = Field(default=None, description="Store the result as a new version of this asset.")


class SQLResult(BaseModel):
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    inputs: list[str]


def _plain(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as plain JSON values (decimals as numbers, not the strings pydantic would make of them)."""
    rows: list[dict[str, Any]] = orjson.loads(dumps(records))
    return rows


def _outcome(result: Any) -> IngestOutcome:
    v = result.version
    return IngestOutcome(
        name=v.name, version=v.version, created=result.created, rows=v.rows, hash=v.content_hash, notes=result.notes
    )


@router.get("", summary="List data assets")
def list_assets(ws: WorkspaceDep) -> list[DataAsset]:
    return ws.data.list()


@router.post("/sql", summary="Run SQL over the data assets (DuckDB)")
def run_sql(body: SQLRequest, ws: WorkspaceDep, caller: CallerDep) -> SQLResult | IngestOutcome:
    if body.save_as is not None:
        require(caller, "data.write")
        return _outcome(ws.data.save_query(body.query, name=body.save_as))
    result = ws.data.query(body.query, limit=body.limit)
    return SQLResult(
        columns=result.columns,
        rows=_plain(result.records()),
        truncated=result.truncated,
        inputs=[v.ref for v in result.inputs],
    )


@router.get("/{ref}", summary="A data version: `name`, `name:3` or `name@latest`")
def get_version(ref: str, ws: WorkspaceDep) -> DataVersion:
    return ws.data.get(ref)


@router.get("/{name}/versions", summary="Every version of a data asset")
def list_versions(name: str, ws: WorkspaceDep) -> list[DataVersion]:
    return ws.data.versions(name)


@router.get("/{ref}/rows", summary="The first rows of a data version")
def head(ref: str, ws: WorkspaceDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 10) -> SQLResult:
    version = ws.data.get(ref)
    table = ws.data.read_table(version).slice(0, limit)
    return SQLResult(
        columns=table.column_names, rows=_plain(table.to_pylist()), truncated=version.rows > limit, inputs=[version.ref]
    )


@router.get("/{ref}/profile", summary="Column statistics of a data version (computed if it has none stored)")
def profile(ref: str, ws: WorkspaceDep) -> dict[str, Any]:
    from conveyor.data import profile_of

    version, found = profile_of(ws.data, ref)
    body: dict[str, Any] = orjson.loads(dumps({"ref": version.ref, **found}))
    return body


@router.get("/{ref}/diff/{other}", summary="What changed between two data versions: schema, rows, statistics")
def diff(ref: str, other: str, ws: WorkspaceDep) -> dict[str, Any]:
    from conveyor.data import diff_versions

    body: dict[str, Any] = orjson.loads(dumps(diff_versions(ws.data, ref, other)))
    return body


@router.post(
    "/{name}/versions",
    summary="Upload a file as a new version (the request body is the file)",
    status_code=201,
    openapi_extra={
        "requestBody": {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    },
)
async def upload(
    name: str,
    request: Request,
    ws: WorkspaceDep,
    format: Annotated[str, Query(description=f"One of {', '.join(FORMATS)}.")],
) -> IngestOutcome:
    if format not in FORMATS:
        raise BadInput(f"Unknown format {format!r}; use one of {', '.join(FORMATS)}.")
    folder = Path(tempfile.mkdtemp(prefix="conveyor-upload-"))
    try:
        path = folder / f"upload.{format}"
        with path.open("wb") as fh:
            async for chunk in request.stream():
                fh.write(chunk)
        from starlette.concurrency import run_in_threadpool

        result = await run_in_threadpool(lambda: ws.data.ingest(path, name=name, format=format))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _outcome(result)


@router.post("/{name}/ingest", summary="Ingest from a datastore: a file in it, or a SQL query", status_code=201)
def ingest(name: str, body: IngestRequest, ws: WorkspaceDep) -> IngestOutcome:
    result = ws.data.ingest(
        body.path,
        name=name,
        store=body.store,
        query=body.query,
        incremental_column=body.incremental_column,
        format=body.format,
        description=body.description,
    )
    return _outcome(result)
