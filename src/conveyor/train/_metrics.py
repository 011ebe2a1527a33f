"""Metrics the search optimises: names, direction, and scoring from out-of-fold predictions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from conveyor.errors import BadInput, did_you_mean

__all__ = ["METRICS", "MetricSpec", "default_metric", "resolve_metric", "score"]

Task = Literal["classification", "regression", "forecasting"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    task: Literal["classification", "regression"]
    greater_is_better: bool
    uses_proba: bool
    description: str


METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in [
        MetricSpec("roc_auc", "classification", True, True, "area under the ROC curve (one-vs-rest if multiclass)"),
        MetricSpec("log_loss", "classification", False, True, "cross-entropy of the predicted probabilities"),
        MetricSpec("accuracy", "classification", True, False, "share of rows predicted right"),
        MetricSpec("balanced_accuracy", "classification", True, False, "mean recall over classes"),
        MetricSpec("f1_macro", "classification", True, False, "F1 averaged over classes"),
        MetricSpec("r2", "regression", True, False, "coefficient of determination"),
        MetricSpec("rmse", "regression", False, False, "root mean squared error"),
        MetricSpec("mae", "regression", False, False, "mean absolute error"),
    ]
}


def default_metric(task: str) -> str:
    return "roc_auc" if task == "classification" else "rmse" if task == "forecasting" else "r2"


def resolve_metric(name: str | None, task: str) -> MetricSpec:
    """The metric to optimise for ``task``.

    Raises:
        BadInput: the metric is unknown, or made for the other task.
    """
    name = name or default_metric(task)
    spec = METRICS.get(name)
    base = "regression" if task == "forecasting" else task
    allowed = [m for m, s in METRICS.items() if s.task == base and (task != "forecasting" or m in ("rmse", "mae"))]
    if spec is None:
        raise BadInput(
            f"Unknown metric {name!r}.{did_you_mean(name, METRICS)} Metrics for {task}: {', '.join(allowed)}.",
            metric=name,
        )
    if spec.task != base or name not in allowed:
        raise BadInput(
            f"Metric {name!r} does not fit the task {task}. Use one of: {', '.join(allowed)}.",
            metric=name,
        )
    return spec


def score(spec: MetricSpec, y: np.ndarray[Any, Any], pred: np.ndarray[Any, Any]) -> float:
    """The metric, oriented so that greater is better (losses negated).

    ``pred`` holds class probabilities (rows × classes, classes encoded 0..k-1) for classification, values
    for regression.
    """
    value = raw_score(spec, y, pred)
    return value if spec.greater_is_better else -value


def raw_score(spec: MetricSpec, y: np.ndarray[Any, Any], pred: np.ndarray[Any, Any]) -> float:  # noqa: PLR0911
    from sklearn import metrics as m

    if spec.task == "regression":
        if spec.name == "r2":
            return float(m.r2_score(y, pred))
        if spec.name == "rmse":
            return float(np.sqrt(m.mean_squared_error(y, pred)))
        return float(m.mean_absolute_error(y, pred))
    n_classes = pred.shape[1]
    labels = np.arange(n_classes)
    if spec.name == "roc_auc":
        if len(np.unique(y)) < 2:
            return 0.5
        if n_classes == 2:
            return float(m.roc_auc_score(y, pred[:, 1]))
        proba = _normalised(pred)
        present = np.unique(y)
        if len(present) < n_classes:  # a fold without some class: score the classes it holds
            return float(
                m.roc_auc_score(
                    y,
                    proba[:, present] / proba[:, present].sum(axis=1, keepdims=True),
                    multi_class="ovr",
                    labels=present,
                )
            )
        return float(m.roc_auc_score(y, proba, multi_class="ovr", labels=labels))
    if spec.name == "log_loss":
        return float(m.log_loss(y, _normalised(pred), labels=labels))
    predicted = pred.argmax(axis=1)
    if spec.name == "accuracy":
        return float(m.accuracy_score(y, predicted))
    if spec.name == "balanced_accuracy":
        return float(m.balanced_accuracy_score(y, predicted))
    return float(m.f1_score(y, predicted, average="macro", labels=labels, zero_division=0))


def _normalised(proba: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    clipped = np.clip(proba, 1e-15, 1.0)
    return np.asarray(clipped / clipped.sum(axis=1, keepdims=True))
