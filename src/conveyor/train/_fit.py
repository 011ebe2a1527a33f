"""Fitting one tabular model with a holdout evaluation (the walking skeleton; AutoML builds on it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from conveyor.errors import BadInput, NotFound, ValidationFailed, did_you_mean
from conveyor.train._featurize import ColumnKind, build_featurizer, infer_column_kinds

__all__ = ["Task", "TrainingResult", "train_tabular"]

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class TrainingResult:
    """A fitted model and its evaluation on held-out rows."""

    model: Any
    task: Task
    learner: str
    params: dict[str, Any]
    metrics: dict[str, float]
    column_kinds: dict[str, ColumnKind]
    n_train: int
    n_test: int
    example: pd.DataFrame


def train_tabular(
    frame: pd.DataFrame,
    target: str,
    *,
    task: Task | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    test_size: float = 0.2,
    seed: int = 0,
    max_iter: int = 200,
) -> TrainingResult:
    """Featurise, fit a histogram gradient-boosting model on a stratified split, and score the holdout.

    ``exclude`` names columns the model must not see (identifiers, leaks); requests need not carry them.

    Raises:
        NotFound: ``target`` is not a column (with the closest names).
        ValidationFailed: the target has one class, or too few rows.
        BadInput: ``task`` does not fit the target.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline

    if target not in frame.columns:
        raise NotFound(
            f"No column {target!r} to predict.{did_you_mean(target, map(str, frame.columns))} "
            f"Columns are: {', '.join(map(str, frame.columns))}.",
            target=target,
        )
    labelled = frame[frame[target].notna()]
    if len(labelled) < 20:
        raise ValidationFailed(f"Only {len(labelled)} rows have a value for {target!r}; at least 20 are needed.")
    y = labelled[target]
    missing = [c for c in exclude if c not in frame.columns]
    if missing:
        raise NotFound(
            f"Cannot exclude {missing[0]!r}: no such column.{did_you_mean(missing[0], map(str, frame.columns))}"
        )
    x = labelled.drop(columns=[target, *exclude])
    task = task or _infer_task(y)
    if task == "classification":
        if y.nunique() < 2:
            raise ValidationFailed(f"Target {target!r} has a single class ({y.iloc[0]!r}); nothing to learn.")
    elif not pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_bool_dtype(y.dtype):
        raise BadInput(f"Task 'regression' needs a numeric target; {target!r} is {y.dtype}. Use classification.")

    kinds = infer_column_kinds(x)
    params = {
        "learning_rate": 0.1,
        "max_iter": max_iter,
        "early_stopping": True,
        "random_state": seed,
    }
    learner = (
        HistGradientBoostingClassifier(**params)
        if task == "classification"
        else HistGradientBoostingRegressor(**params)
    )
    model = Pipeline([("features", build_featurizer(kinds)), ("learner", learner)])
    stratify = y if task == "classification" and y.value_counts().min() >= 2 else None
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=seed, stratify=stratify)
    model.fit(x_train, y_train)
    metrics = _evaluate(model, task, x_test, y_test)
    return TrainingResult(
        model=model,
        task=task,
        learner=type(learner).__name__,
        params=params,
        metrics=metrics,
        column_kinds=kinds,
        n_train=len(x_train),
        n_test=len(x_test),
        example=x_test.head(200),
    )


def _infer_task(y: pd.Series) -> Task:
    if pd.api.types.is_bool_dtype(y.dtype) or not pd.api.types.is_numeric_dtype(y.dtype):
        return "classification"
    if pd.api.types.is_integer_dtype(y.dtype) and y.nunique() <= 20:
        return "classification"
    return "regression"


def _evaluate(model: Any, task: Task, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    from sklearn import metrics as m

    predicted = model.predict(x)
    if task == "regression":
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y, predicted))),
            "mae": float(m.mean_absolute_error(y, predicted)),
            "r2": float(m.r2_score(y, predicted)),
        }
    proba = model.predict_proba(x)
    classes = list(model.classes_)
    result = {
        "accuracy": float(m.accuracy_score(y, predicted)),
        "f1_macro": float(m.f1_score(y, predicted, average="macro")),
        "log_loss": float(m.log_loss(y, proba, labels=classes)),
    }
    if len(classes) == 2:
        result["roc_auc"] = float(m.roc_auc_score(y, proba[:, 1]))
    else:
        result["roc_auc"] = float(m.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    return result
