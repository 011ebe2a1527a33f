"""``/api/v1/train``: AutoML, run synchronously (the request returns when the time budget is spent)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from conveyor.api._deps import WorkspaceDep

router = APIRouter(prefix="/train", tags=["train"])


class TrainRequest(BaseModel):
    data: str = Field(description="Data version to train on, e.g. churn@latest.")
    target: str = Field(description="The column to predict.")
    task: Literal["classification", "regression", "forecasting"] | None = None
    time_budget: float = Field(default=60.0, gt=0, le=3600, description="Seconds for the whole search (strict).")
    metric: str | None = None
    experiment: str = "automl"
    model_config = ConfigDict(populate_by_name=True)

    register_as: str | None = Field(
        default=None, alias="register", description="Register the winner under this model name."
    )
    alias: str | None = None
    exclude: list[str] = []
    learners: list[str] | None = None
    time_column: str | None = None
    series_id: str | None = None
    horizon: int | None = Field(default=None, ge=1)
    max_trials: int | None = Field(default=None, ge=1)
    seed: int = 0


@router.post("", summary="Search learners and hyperparameters under a time budget (AutoML)", status_code=201)
def train(body: TrainRequest, ws: WorkspaceDep) -> dict[str, Any]:
    options = body.model_dump(exclude={"data", "target", "register_as"})
    options["exclude"] = tuple(options["exclude"])
    options["register"] = body.register_as
    return ws.train.automl(body.data, body.target, **options).to_json()
