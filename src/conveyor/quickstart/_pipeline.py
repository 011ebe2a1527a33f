"""The quickstart's lifecycle as a pipeline: ingest → prepare (SQL) → train (tracked) → evaluate → register.

Run it like any pipeline (``conveyor pipeline run conveyor.quickstart:churn_pipeline``); a second run with
the same parameters is answered from the cache. ``conveyor quickstart`` runs it, then deploys and scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor.data import DataVersion
from conveyor.pipelines import current_step, pipeline, sql_step, step
from conveyor.quickstart._churn import ID_COLUMN, TARGET, make_churn_frame

__all__ = ["ASSET", "EXPERIMENT", "MODEL", "TrainedModel", "churn_pipeline"]

ASSET = "churn"
EXPERIMENT = "quickstart-churn"
MODEL = "churn"
MADE_BY = "conveyor quickstart"
"""The tag (``made_by``) and description that mark what the quickstart made: it touches nothing else."""
AUTOML_BUDGET = 10.0  # seconds: a short AutoML search keeps the quickstart quick


@dataclass(frozen=True)
class TrainedModel:
    """What the train step hands on: the tracked run and the AutoML result (model, held-out metrics, example
    rows)."""

    run_id: str
    input_ref: str
    training: Any


@step
def ingest_churn(rows: int, seed: int) -> Any:
    """Generate the synthetic churn CSV and ingest it as a version of ``churn`` (unchanged content: no new
    version)."""
    ws = current_step().workspace
    source = ws.settings.home / "quickstart" / "churn.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    make_churn_frame(rows, seed).to_csv(source, index=False)
    result = ws.data.ingest(source, name=ASSET, description="Synthetic customer churn (quickstart)")
    print(f"{result.version.ref}: {result.version.rows:,} rows ({'new' if result.created else 'unchanged'})")
    return result.version


prepare = sql_step(
    "prepare",
    f"SELECT * EXCLUDE ({ID_COLUMN}) FROM churn WHERE {TARGET} IS NOT NULL",
    inputs=["churn"],
)


@step
def train(prepared: DataVersion, seed: int) -> TrainedModel:
    """AutoML under a short budget, tracked: the run records its input data version, the guardrails report,
    one child run per trial, held-out metrics and evaluation charts."""
    ws = current_step().workspace
    tags = {"source": "quickstart", "pipeline_run": current_step().run_id}
    result = ws.train.automl(
        prepared,
        TARGET,
        time_budget=AUTOML_BUDGET,
        experiment=EXPERIMENT,
        run_name="quickstart",
        tags=tags,
        seed=seed,
    )
    print(
        f"run {result.run_id}: {result.best_learner} after {len(result.trials)} trials, "
        f"held-out ROC AUC {result.test_metrics['roc_auc']:.3f}"
    )
    return TrainedModel(result.run_id, prepared.ref, result)


@step
def evaluate(trained: TrainedModel, min_roc_auc: float) -> dict[str, Any]:
    """The quality gate: the model is registered only if its held-out ROC AUC reaches ``min_roc_auc``."""
    metrics = dict(trained.training.test_metrics)
    if metrics["roc_auc"] < min_roc_auc:
        raise ValueError(
            f"ROC AUC {metrics['roc_auc']:.3f} is below the gate {min_roc_auc}; the model is not registered."
        )
    return metrics


@step
def register(trained: TrainedModel, metrics: dict[str, Any]) -> Any:
    """Register the model with its input signature, and point ``@champion`` at it."""
    from conveyor.registry import infer_signature

    ws = current_step().workspace
    training = trained.training
    example = training.example
    signature = infer_signature(example, training.model.predict(example.head(50)))
    version = ws.models.register(
        MODEL, training.model, run_id=trained.run_id, signature=signature, metrics=metrics, tags={"made_by": MADE_BY}
    )
    return ws.models.set_alias(MODEL, "champion", version.version)


@pipeline(name="churn-quickstart")
def churn_pipeline(rows: int = 20_000, seed: int = 7, min_roc_auc: float = 0.7) -> None:
    """Ingest synthetic churn data, prepare it with SQL, train and evaluate a model, register it @champion."""
    raw = ingest_churn(rows, seed)
    prepared = prepare(raw)
    trained = train(prepared, seed)
    metrics = evaluate(trained, min_roc_auc)
    register(trained, metrics)
