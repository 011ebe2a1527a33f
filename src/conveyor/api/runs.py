"""``/api/v1/runs``: tracked runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api._deps import WorkspaceDep
from conveyor.tracking import Metric, Run

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("", summary="Most recent runs, newest first")
def list_runs(
    ws: WorkspaceDep,
    experiment: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[Run]:
    return ws.runs.list(experiment=experiment, limit=limit)


@router.get("/{run_id}", summary="One run with its parameters, metrics, tags, artifacts and inputs")
def get_run(run_id: str, ws: WorkspaceDep) -> Run:
    return ws.runs.get(run_id)


@router.get("/{run_id}/metrics/{key}", summary="Every value of one metric, by step")
def metric_history(run_id: str, key: str, ws: WorkspaceDep) -> list[Metric]:
    return ws.runs.metric_history(run_id, key)
