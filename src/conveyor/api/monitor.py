"""``/api/v1/drift``: ad-hoc drift between two data versions (references only: a caller never names a file)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, Field

from conveyor._json import dumps
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
