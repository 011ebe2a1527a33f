"""``/api/v1/batch``: batch scoring of a data version with a registered model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from conveyor.api._deps import WorkspaceDep
from conveyor.serve._batch import DEFAULT_CHUNK_ROWS, BatchResult

router = APIRouter(prefix="/batch", tags=["batch"])


class ScoreRequest(BaseModel):
    """A batch scoring job: the same options as ``conveyor batch score``."""

    model: Annotated[str, Field(description="Model version: NAME, NAME:VERSION or NAME@ALIAS.")]
    data: Annotated[str, Field(description="Data version: NAME, NAME@latest or NAME:N.")]
    output: Annotated[str, Field(description="Data asset that gets the scored rows as a new version.")]
    executor: Annotated[
        str, Field(description="local or local:N (a Dask scheduler only from the CLI or SDK on the machine).")
    ] = "local"
    chunk_rows: Annotated[int, Field(ge=1, description="Rows per chunk.")] = DEFAULT_CHUNK_ROWS
    error_threshold: Annotated[float, Field(ge=0.0, le=1.0, description="Largest share of failed rows.")] = 0.01
    retries: Annotated[int, Field(ge=0, le=10, description="Retries of a chunk whose worker failed.")] = 2


@router.post("/score", summary="Score a data version with a model into a new data version")
def score(body: ScoreRequest, ws: WorkspaceDep) -> BatchResult:
    """Runs the job to completion and returns it (the call lasts as long as the scoring does)."""
    return ws.batch.score(
        body.model,
        body.data,
        output=body.output,
        executor=body.executor,
        chunk_rows=body.chunk_rows,
        error_threshold=body.error_threshold,
        retries=body.retries,
        trusted_only=True,
    )
