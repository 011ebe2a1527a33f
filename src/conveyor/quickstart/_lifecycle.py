"""The quickstart: the churn pipeline (data → prepared data → tracked training run → gated evaluation →
registered model), then an endpoint serving the champion and five customers scored over HTTP.

Each stage is a call into a service, so later issues deepen a stage by deepening its service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.quickstart._churn import ID_COLUMN, TARGET, make_churn_frame

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.workspace import Workspace

__all__ = ["QuickstartResult", "Stage", "run_quickstart"]

MODEL = "churn"
ENDPOINT = "churn"
SCORED_ROWS = 5


@dataclass(frozen=True)
class Stage:
    """One finished stage of the timeline."""

    name: str
    seconds: float
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuickstartResult:
    workspace: str
    data: str
    run_id: str
    model: str
    endpoint: str
    predictions: list[Any]
    seconds: float
    stages: list[Stage]
    metrics: dict[str, float]
    pipeline_run: str = ""
    endpoint_name: str = ENDPOINT
    #: The endpoint's routes: predict, invocations (MLflow), v2_infer (Open Inference Protocol), metrics, ...
    routes: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``conveyor quickstart --json`` prints."""
        return {
            "workspace": self.workspace,
            "data": self.data,
            "run_id": self.run_id,
            "model": self.model,
            "endpoint": self.endpoint,
            "predictions": self.predictions,
            "seconds": round(self.seconds, 3),
            "metrics": self.metrics,
            "pipeline_run": self.pipeline_run,
            "routes": self.routes,
            "stages": [{"name": s.name, "seconds": round(s.seconds, 3), "summary": s.summary} for s in self.stages],
        }


StageCallback = Callable[[str], None]


def run_quickstart(
    ws: Workspace,
    *,
    rows: int = 20_000,
    seed: int = 7,
    on_start: StageCallback | None = None,
    on_done: Callable[[Stage], None] | None = None,
) -> QuickstartResult:
    """Run the lifecycle on a synthetic churn data set and leave the endpoint running.

    The data-to-registry part is the pipeline :data:`~conveyor.quickstart.churn_pipeline` (so a second run
    is answered from its cache); then the champion is deployed and scored over HTTP. ``on_start(stage)`` and
    ``on_done(Stage)`` report progress (the CLI draws its timeline from them). The caller stops the endpoint
    (``ws.endpoints.stop("churn")``) when it no longer wants it.

    Raises:
        UserCodeError: a pipeline step failed (the message names it; its logs have the traceback).
    """
    from conveyor.errors import UserCodeError
    from conveyor.quickstart._pipeline import churn_pipeline

    started = time.perf_counter()
    stages: list[Stage] = []
    run_ids: list[str] = []
    step_started: dict[str, float] = {}

    def progress(event: str, name: str, info: dict[str, Any]) -> None:
        if event == "run":
            run_ids.append(name)
        elif event == "start":
            step_started[name] = time.perf_counter()
            if on_start:
                on_start(name)
        elif event in ("done", "cached"):
            now = time.perf_counter()
            seconds = now - step_started.get(name, now)  # a cached step never started: 0 s, not -0.0
            summary = _summary(ws, run_ids[0], name) + (" (cached)" if event == "cached" else "")
            done = Stage(name, seconds, summary)
            stages.append(done)
            if on_done:
                on_done(done)

    _refuse_what_is_not_ours(ws)
    run = ws.pipelines.run(churn_pipeline, params={"rows": rows, "seed": seed}, progress=progress)
    if run.status != "succeeded":
        raise UserCodeError(f"The quickstart pipeline failed: {run.error}", run_id=run.id)
    data_ref = run.step("ingest_churn").outputs["ref"]
    model = ws.models.get(run.step("register").outputs["ref"])
    metrics = dict(run.step("evaluate").outputs["value"])

    @contextmanager
    def stage(name: str) -> Iterator[dict[str, Any]]:
        if on_start:
            on_start(name)
        t0 = time.perf_counter()
        info: dict[str, Any] = {}
        yield info
        done = Stage(name, time.perf_counter() - t0, info.pop("summary", ""), info)
        stages.append(done)
        if on_done:
            on_done(done)

    with stage("deploy") as info:
        _create_ours(ws)
        ws.endpoints.deploy(ENDPOINT, f"{MODEL}@champion", deployment="blue")
        endpoint = ws.endpoints.get(ENDPOINT)
        routes = endpoint.routes
        info["summary"] = f"{endpoint.url} ({len(endpoint.workers)} workers, blue = {model.ref}, keys on)"

    with stage("score") as info:
        records = _scoring_records(make_churn_frame(rows, seed))
        predictions = ws.endpoints.invoke(ENDPOINT, records)
        info["summary"] = f"{len(predictions)} customers scored over HTTP (2 churned, 3 stayed): {predictions}"

    return QuickstartResult(
        workspace=str(ws.settings.home),
        data=data_ref,
        run_id=model.run_id or "",
        model=model.ref,
        endpoint=routes["predict"],
        predictions=predictions,
        seconds=time.perf_counter() - started,
        stages=stages,
        metrics=metrics,
        pipeline_run=run.id,
        routes=routes,
    )


def _summary(ws: Workspace, run_id: str, step: str) -> str:
    """One line about what a quickstart step produced."""
    outputs = ws.pipelines.get_run(run_id).step(step).outputs
    kind = outputs.get("kind")
    if step == "evaluate" and kind == "value":
        m = outputs["value"]
        return f"held-out ROC AUC {m['roc_auc']:.3f}, accuracy {m['accuracy']:.3f} (gate passed)"
    if step == "register":
        return f"{outputs['ref']} @champion"
    if kind == "data":
        version = ws.data.get(outputs["ref"])
        return f"{version.ref}: {version.rows:,} rows, {len(version.schema)} columns"
    if step == "train":
        return "AutoML in a tracked run (guardrails, a child run per trial, held-out metrics, charts)"
    return ""


def _scoring_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Customers who churned and who stayed, as request records, so the scores show the model telling them
    apart."""
    import pandas as pd

    churned = frame[frame[TARGET]].sample(2, random_state=0)
    stayed = frame[~frame[TARGET]].sample(SCORED_ROWS - 2, random_state=0)
    sample = pd.concat([churned, stayed]).drop(columns=[TARGET, ID_COLUMN])
    records: list[dict[str, Any]] = orjson.loads(sample.to_json(orient="records"))
    return records


def _create_ours(ws: Workspace) -> None:
    """Make the endpoint, marked as the quickstart's, unless it exists (checked as ours before the pipeline)."""
    from conveyor.errors import NotFound
    from conveyor.quickstart._pipeline import MADE_BY

    try:
        ws.endpoints.get(ENDPOINT)
    except NotFound:
        ws.endpoints.create(ENDPOINT, description=MADE_BY)


def _refuse_what_is_not_ours(ws: Workspace) -> None:
    """The quickstart redeploys the endpoint ``churn`` and moves ``churn@champion``: refuse, before anything
    runs, when either is the user's own (not marked as made by the quickstart; an endpoint or versions made by an
    older quickstart are recognised by their one ``blue`` deployment and their run's experiment)."""
    from conveyor.errors import Conflict, NotFound
    from conveyor.quickstart._pipeline import EXPERIMENT, MADE_BY

    def ours(version: Any) -> bool:
        if version.tags.get("made_by") == MADE_BY:
            return True
        try:
            return bool(version.run_id) and ws.runs.get(version.run_id).experiment == EXPERIMENT
        except NotFound:
            return False

    try:
        versions = ws.models.versions(MODEL)
    except NotFound:
        versions = []
    foreign = [v.ref for v in versions if not ours(v)]
    if foreign:
        raise Conflict(
            f"The model {MODEL!r} has versions the quickstart did not make ({', '.join(foreign[:3])}); it would move "
            f"their @champion alias. Run the quickstart in another workspace (--home DIR), or rename your model.",
            model=MODEL,
        )
    try:
        endpoint = ws.endpoints.get(ENDPOINT)
    except NotFound:
        return
    legacy = [d.name for d in endpoint.deployments] == ["blue"] and any(
        v.ref == endpoint.deployments[0].model and ours(v) for v in versions
    )
    if endpoint.description != MADE_BY and not legacy:
        raise Conflict(
            f"An endpoint named {ENDPOINT!r} exists that the quickstart did not make; the quickstart redeploys and "
            f"stops that name, so it leaves yours alone. Run it in another workspace (--home DIR), or rename or "
            f"delete your endpoint (conveyor endpoints delete {ENDPOINT}).",
            endpoint=ENDPOINT,
        )
