"""Training: automatic featurisation, AutoML (learner and hyperparameter search with Optuna under a strictly
enforced time budget, ensembles, data guardrails, evaluation charts, forecasting), and the single-learner
skeleton.

``ws.train.automl("churn@latest", "churned", time_budget=60)`` is the entry point; see docs/training.md.
``ws.train.sweep("sweep.yaml")`` runs the user's own function or script over a search space (``_sweep``).

Names load on first use (scikit-learn takes seconds to import on a busy machine), so that ``ws.train`` is
cheap and an AutoML time budget counts every import the search needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.train._automl import AutoMLResult, Training, TrialRecord, automl
    from conveyor.train._ensemble import AutoMLModel
    from conveyor.train._featurize import DateFeatures, TextColumn, build_featurizer, infer_column_kinds
    from conveyor.train._fit import TrainingResult, train_tabular
    from conveyor.train._guardrails import Guardrail
    from conveyor.train._learners import LEARNERS
    from conveyor.train._metrics import METRICS
    from conveyor.train._sweep import SweepResult, SweepSpec, SweepTrial, load_sweep, report, run_sweep

__all__ = [
    "LEARNERS",
    "METRICS",
    "AutoMLModel",
    "AutoMLResult",
    "DateFeatures",
    "Guardrail",
    "SweepResult",
    "SweepSpec",
    "SweepTrial",
    "TextColumn",
    "Training",
    "TrainingResult",
    "TrialRecord",
    "automl",
    "build_featurizer",
    "infer_column_kinds",
    "load_sweep",
    "report",
    "run_sweep",
    "train_tabular",
]

_HOME = {
    "AutoMLResult": "_automl",
    "Training": "_automl",
    "TrialRecord": "_automl",
    "automl": "_automl",
    "AutoMLModel": "_ensemble",
    "DateFeatures": "_featurize",
    "TextColumn": "_featurize",
    "build_featurizer": "_featurize",
    "infer_column_kinds": "_featurize",
    "TrainingResult": "_fit",
    "train_tabular": "_fit",
    "Guardrail": "_guardrails",
    "LEARNERS": "_learners",
    "METRICS": "_metrics",
    "SweepResult": "_sweep",
    "SweepSpec": "_sweep",
    "SweepTrial": "_sweep",
    "load_sweep": "_sweep",
    "report": "_sweep",
    "run_sweep": "_sweep",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'conveyor.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"conveyor.train.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
