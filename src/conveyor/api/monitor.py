"""``/api/v1/drift``: ad-hoc drift between two data versions (references only: a caller never names a file), and
``/api/v1/monitors``: monitors of endpoints, their runs, history, alerts and feedback."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from conveyor._json import dumps
from conveyor.api._auth import CallerDep
from conveyor.api._deps import WorkspaceDep

router = APIRouter(tags=["monitoring"])


class DriftRequest(BaseModel):
    """Two data versions to compare, and optionally one metric, its threshold and the columns."""

    reference: str = Field(
        description="A data version (`name`, `name:3`, `name@latest`) or a model version's stored reference profile "
        "(`model:churn@champion`).",
        max_length=200,
    )
    current: str = Field(description="The data version compared with the reference.", max_length=200)
    metric: str | None = Field(default=None, description="psi, js, wasserstein, ks or chi2 (default: per column).")
    threshold: float | None = Field(default=None, gt=0, le=1e6, description="Threshold of `metric`.")
    columns: list[str] | None = Field(default=None, max_length=10_000, description="Only these columns.")
    prediction: str | None = Field(default=None, description="The model's prediction column.")
    drift_share: float = Field(default=0.5, gt=0, le=1, description="Share of drifted columns that is drift.")


class ColumnDriftOut(BaseModel):
    column: str
    type: str
    metric: str | None
    value: float | None
    threshold: float | None
    drifted: bool | None
    detail: dict[str, Any] = {}
    message: str | None = None


class DriftResult(BaseModel):
    reference: str
    current: str
    columns: list[ColumnDriftOut]
    share_drifted: float
    drifted: bool
    drift_share: float
    rows: dict[str, int]
    seconds: float
    missing: dict[str, list[str]]
    messages: list[str]


@router.post("/drift", summary="Drift of a data version against a reference version, column by column")
def drift(body: DriftRequest, ws: WorkspaceDep) -> DriftResult:
    # Resolved here as data versions (or a stored profile), so nothing a caller sends is ever read as a path.
    reference: Any = (
        ws.monitors.reference(body.reference.removeprefix("model:"), compute=False)
        if body.reference.startswith("model:")
        else ws.data.get(body.reference)
    )
    current = ws.data.get(body.current)
    report = ws.monitors.drift(
        reference,
        current,
        metric=body.metric,
        columns=body.columns,
        threshold=body.threshold,
        prediction=body.prediction,
        drift_share=body.drift_share,
    )
    return DriftResult.model_validate(orjson.loads(dumps(report.to_dict())))


# -- monitors of endpoints -------------------------------------------------------------------------------

monitors = APIRouter(prefix="/monitors", tags=["monitoring"])
MAX_FEEDBACK_ROWS = 100_000


class MonitorRequest(BaseModel):
    """A monitor of an endpoint's collected requests (see `conveyor monitor create`)."""

    name: str = Field(max_length=128)
    endpoint: str = Field(max_length=128)
    signals: list[str] = Field(default=["drift", "quality", "prediction"], max_length=4)
    window: str = Field(default="1h", max_length=32, description="15m, 1h, 1d, ... or seconds.")
    reference: str | None = Field(
        default=None, max_length=200, description="A data version; default: the served model's reference profile."
    )
    schedule: str | None = Field(default=None, max_length=255, description="Cron expression.")
    timezone: str = Field(default="UTC", max_length=64)
    alerts: list[str] = Field(default=["log"], max_length=20, description="log, webhook:URL or email:ADDRESS.")
    action: str | None = Field(default=None, max_length=200, description="retrain:PIPELINE")
    thresholds: dict[str, Any] = Field(default={}, description="drift_share, min_rows, metric, min, max, ...")
    replace: bool = False


class FeedbackRequest(BaseModel):
    """Labels for the endpoint's requests: each row names its request id, its row in the request (default 0)
    and the label."""

    labels: list[dict[str, Any]] = Field(max_length=MAX_FEEDBACK_ROWS)
    label: str | None = Field(default=None, description="The label field (default: the only other one).")
    id_column: str = "request_id"
    row_column: str = "row"


def _plain_json(value: Any) -> Any:
    return orjson.loads(dumps(value))


def _plain_object(value: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = _plain_json(value)
    return found


@monitors.get("", summary="List monitors")
def list_monitors(ws: WorkspaceDep, endpoint: str | None = None) -> list[dict[str, Any]]:
    return [_plain_json(m.to_dict()) for m in ws.monitors.list(endpoint)]


@monitors.post(
    "", summary="Create a monitor of an endpoint (webhooks to private addresses: admins only)", status_code=201
)
def create_monitor(body: MonitorRequest, ws: WorkspaceDep, caller: CallerDep) -> dict[str, Any]:
    from conveyor.data import privileged_datastore_reason
    from conveyor.errors import Forbidden
    from conveyor.governance import role_allows

    for alert in body.alerts:
        kind, _, target = alert.partition(":")
        if kind.strip().lower() != "webhook":
            continue
        reason = privileged_datastore_reason(target.strip(), ws)
        if reason is not None and not role_allows(caller.role, "datastores.admin"):
            raise Forbidden(
                f"Only an admin may point a webhook there: {reason}. The server would send requests to it on every "
                "alert."
            )
    made = ws.monitors.create(
        body.name,
        body.endpoint,
        signals=body.signals,
        window=body.window,
        reference=body.reference,
        schedule=body.schedule,
        timezone=body.timezone,
        alerts=body.alerts,
        action=body.action,
        thresholds=body.thresholds,
        replace=body.replace,
    )
    return _plain_object(made.to_dict())


@monitors.get("/{name}", summary="A monitor's definition and last result")
def get_monitor(name: str, ws: WorkspaceDep) -> dict[str, Any]:
    found = ws.monitors.get(name)
    last = ws.monitors.history(name, limit=1)
    return _plain_object({**found.to_dict(), "last_result": last[0].to_dict() if last else None})


@monitors.delete("/{name}", summary="Delete a monitor with its results and alerts", status_code=204)
def delete_monitor(name: str, ws: WorkspaceDep) -> Response:
    ws.monitors.delete(name)
    return Response(status_code=204)


@monitors.post("/{name}/run", summary="Run a monitor now over its last window (alerts sent, action started)")
def run_monitor(name: str, ws: WorkspaceDep) -> dict[str, Any]:
    return _plain_object(ws.monitors.run(name).to_dict())


@monitors.get("/{name}/history", summary="A monitor's results over time, newest first")
def monitor_history(name: str, ws: WorkspaceDep, limit: int = Query(default=100, ge=1, le=10_000)) -> dict[str, Any]:
    return _plain_object({"monitor": name, "results": [r.to_dict() for r in ws.monitors.history(name, limit)]})


@monitors.get("/{name}/alerts", summary="A monitor's alerts with every delivery attempt")
def monitor_alerts(name: str, ws: WorkspaceDep, limit: int = Query(default=100, ge=1, le=10_000)) -> dict[str, Any]:
    return _plain_object({"monitor": name, "alerts": [a.to_dict() for a in ws.monitors.alerts(name, limit)]})


@monitors.post("/{name}/feedback", summary="Send labels for the endpoint's requests, joined by request id and row")
def monitor_feedback(name: str, body: FeedbackRequest, ws: WorkspaceDep) -> dict[str, Any]:
    import pandas as pd

    from conveyor.errors import BadInput

    if not body.labels:
        raise BadInput("'labels' holds no rows.")
    frame = pd.DataFrame.from_records(body.labels)
    return ws.monitors.feedback(name, frame, label=body.label, id_column=body.id_column, row_column=body.row_column)
