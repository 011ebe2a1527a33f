"""``/api/v1/runs``: tracked runs — list, search with a filter expression, compare, metric history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from conveyor.api._deps import WorkspaceDep
from conveyor.tracking import Experiment, Metric, Run, RunPage

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("", summary="Most recent runs, newest first")
def list_runs(
    ws: WorkspaceDep,
    experiment: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[Run]:
    return ws.runs.list(experiment=experiment, limit=limit)


@router.get("/search", summary="Runs matching a filter expression, ordered, one page at a time")
def search_runs(
    ws: WorkspaceDep,
    filter: Annotated[str, Query(description="e.g. metrics.auc > 0.8 and params.learner = 'lgbm'")] = "",
    experiment: Annotated[list[str] | None, Query(description="Only these experiments (repeatable).")] = None,
    order_by: Annotated[list[str] | None, Query(description="e.g. 'metrics.auc desc' (repeatable).")] = None,
    max_results: Annotated[int, Query(ge=1, le=10_000)] = 100,
    page_token: str | None = None,
) -> RunPage:
    return ws.runs.search(
        filter, experiments=experiment, order_by=order_by, max_results=max_results, page_token=page_token
    )


@router.get("/compare", summary="Runs side by side: parameters and metrics by run, and which differ")
def compare_runs(ws: WorkspaceDep, run_id: Annotated[list[str], Query(min_length=2)]) -> dict[str, Any]:
    comparison = ws.runs.compare(run_id)
    return {
        "runs": [r.id for r in comparison.runs],
        "params": comparison.params,
        "metrics": comparison.metrics,
        "differing_params": comparison.differing_params,
        "differing_metrics": comparison.differing_metrics,
    }


@router.get("/compare.html", summary="Charts comparing runs (offline HTML page)", response_class=HTMLResponse)
def compare_runs_html(ws: WorkspaceDep, run_id: Annotated[list[str], Query(min_length=2)]) -> HTMLResponse:
    return HTMLResponse(ws.runs.compare_html(run_id))


@router.get("/experiments", summary="Experiments with their number of runs")
def list_experiments(ws: WorkspaceDep) -> list[Experiment]:
    return ws.runs.experiments()


@router.get("/{run_id}", summary="One run with its parameters, metrics, tags, artifacts, inputs and outputs")
def get_run(run_id: str, ws: WorkspaceDep) -> Run:
    return ws.runs.get(run_id)


@router.get("/{run_id}/metrics/{key}", summary="Every value of one metric, by step")
def metric_history(run_id: str, key: str, ws: WorkspaceDep) -> list[Metric]:
    return ws.runs.metric_history(run_id, key)


def artifact_response(ws: Workspace, run_id: str, path: str) -> Response:
    """One artifact of a run with its media type (the recorded one, else guessed from its name).

    Served inside a sandbox (``Content-Security-Policy: sandbox allow-scripts``): an HTML report's charts run,
    but as an opaque origin, so a page someone logged cannot act with the viewer's session; ``nosniff`` keeps
    browsers to the declared type.
    """
    import mimetypes

    found, body = ws.runs.artifact(run_id, path)  # one lookup; NotFound with the nearest names when absent
    media = found.media_type
    if not media or media == "application/octet-stream":
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
    name = path.rsplit("/", 1)[-1].replace('"', "")
    return Response(
        body,
        media_type=media,
        headers={
            "content-security-policy": "sandbox allow-scripts",
            "x-content-type-options": "nosniff",
            "content-disposition": f'inline; filename="{name}"',
        },
    )


@router.get(
    "/{run_id}/artifacts/{path:path}",
    summary="One artifact of a run (an evaluation report, a chart, a model file) with its content type",
    response_class=Response,
)
def get_artifact(run_id: str, path: str, ws: WorkspaceDep) -> Response:
    return artifact_response(ws, run_id, path)
