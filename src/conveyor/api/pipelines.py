"""``/api/v1/pipelines``, ``/api/v1/pipeline-runs``, ``/api/v1/schedules``: pipeline definitions, their runs,
schedules, and the trigger API (what monitoring alerts call to start a run)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from conveyor.api._deps import WorkspaceDep
from conveyor.errors import BadInput
from conveyor.pipelines import PipelineInfo, PipelineRun, Schedule

router = APIRouter(tags=["pipelines"])

_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")


class RunRequest(BaseModel):
    params: dict[str, Any] = Field(default={}, description="Overrides of the pipeline's parameters.")


class TriggerRequest(BaseModel):
    reason: dict[str, Any] = Field(
        description='What started the run, recorded on it; needs a "kind", e.g. {"kind": "alert", "alert": '
        '"churn-drift", "metric": "psi", "value": 0.31}.'
    )
    params: dict[str, Any] = Field(default={}, description="Overrides of the pipeline's parameters.")


class ScheduleRequest(BaseModel):
    cron: str | None = Field(default=None, description="Five cron fields, e.g. '0 * * * *' (hourly).")
    timezone: str = Field(default="UTC", description="IANA timezone the cron times are read in.")
    on_data: str | None = Field(default=None, description="Run on each new version of this data asset instead.")
    params: dict[str, Any] = {}


class StartedRun(BaseModel):
    run_id: str
    pipeline: str
    url: str = Field(description="Where to follow the run.")


class StepLogs(BaseModel):
    run_id: str
    step: str
    logs: str


def _started(request: Request, name: str, run_id: str) -> StartedRun:
    return StartedRun(run_id=run_id, pipeline=name, url=str(request.url_for("get_pipeline_run", run_id=run_id)))


@router.get("/pipelines", summary="List registered pipelines")
def list_pipelines(ws: WorkspaceDep) -> list[PipelineInfo]:
    return ws.pipelines.list()


@router.put(
    "/pipelines",
    summary="Register or update the pipeline a YAML spec declares (the request body is the YAML)",
    openapi_extra={"requestBody": {"content": {"application/yaml": {"schema": {"type": "string"}}}}},
)
async def apply_pipeline(request: Request, ws: WorkspaceDep) -> PipelineInfo:
    content_type = request.headers.get("content-type", "text/plain").split(";")[0].strip().lower()
    if content_type not in _YAML_TYPES:
        raise BadInput(f"Send the pipeline spec as YAML (Content-Type: application/yaml), not {content_type}.")
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"The pipeline spec is not UTF-8 text ({exc}).") from exc
    from starlette.concurrency import run_in_threadpool

    info: PipelineInfo = await run_in_threadpool(lambda: ws.pipelines.apply_text(text, trusted_only=True))
    return info


@router.get("/pipelines/{name}", summary="A registered pipeline and its definition")
def get_pipeline(name: str, ws: WorkspaceDep) -> PipelineInfo:
    return ws.pipelines.get(name)


@router.post("/pipelines/{name}/runs", summary="Start a run in the background", status_code=202)
def start_run(name: str, request: Request, ws: WorkspaceDep, body: RunRequest | None = None) -> StartedRun:
    params = body.params if body is not None else {}
    return _started(request, name, ws.pipelines.trigger(name, reason={"kind": "api"}, params=params))


@router.post(
    "/pipelines/{name}/trigger",
    summary="Trigger a run for a reason (monitoring alerts call this)",
    status_code=202,
)
def trigger(name: str, body: TriggerRequest, request: Request, ws: WorkspaceDep) -> StartedRun:
    """Start a run in the background; ``reason`` is recorded as the run's ``trigger``."""
    return _started(request, name, ws.pipelines.trigger(name, reason=body.reason, params=body.params))


@router.get("/pipelines/{name}/runs", summary="A pipeline's most recent runs, newest first")
def list_runs(name: str, ws: WorkspaceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[PipelineRun]:
    return ws.pipelines.runs(pipeline=name, limit=limit)


@router.get("/pipeline-runs/{run_id}", summary="One pipeline run with its steps")
def get_pipeline_run(run_id: str, ws: WorkspaceDep) -> PipelineRun:
    return ws.pipelines.get_run(run_id)


@router.get("/pipeline-runs/{run_id}/steps/{step}/logs", summary="What a step printed (and its traceback)")
def step_logs(run_id: str, step: str, ws: WorkspaceDep) -> StepLogs:
    return StepLogs(run_id=run_id, step=step, logs=ws.pipelines.logs(run_id, step))


@router.get("/schedules", summary="Every schedule")
def list_all_schedules(ws: WorkspaceDep) -> list[Schedule]:
    return ws.pipelines.schedules()


@router.get("/pipelines/{name}/schedules", summary="A pipeline's schedules")
def list_schedules(name: str, ws: WorkspaceDep) -> list[Schedule]:
    return ws.pipelines.schedules(name)


@router.post("/pipelines/{name}/schedules", summary="Schedule a pipeline: cron, or new data versions", status_code=201)
def add_schedule(name: str, body: ScheduleRequest, ws: WorkspaceDep) -> Schedule:
    return ws.pipelines.schedule(name, cron=body.cron, timezone=body.timezone, on_data=body.on_data, params=body.params)


@router.delete("/pipelines/{name}/schedules", summary="Remove all of a pipeline's schedules", status_code=204)
def remove_schedules(name: str, ws: WorkspaceDep) -> Response:
    ws.pipelines.unschedule(name)
    return Response(status_code=204)


@router.delete("/pipelines/{name}/schedules/{schedule_id}", summary="Remove one schedule", status_code=204)
def remove_schedule(name: str, schedule_id: str, ws: WorkspaceDep) -> Response:
    ws.pipelines.unschedule(name, schedule_id)
    return Response(status_code=204)
