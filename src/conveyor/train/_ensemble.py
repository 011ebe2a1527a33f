"""The model AutoML hands back: a weighted average of fitted pipelines (one per validation fold of each chosen
trial), taking raw rows and answering in the original labels; and the greedy ensemble selection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.metaestimators import available_if

__all__ = ["AutoMLModel", "select_ensemble"]


class AutoMLModel(BaseEstimator):  # type: ignore[misc]
    """A fitted AutoML model.

    Each member is a list of fitted sklearn Pipelines (featurisation + learner) trained on the training part
    of each validation fold, and a weight; a prediction averages the members' fold models (cross-validation
    bagging) and then the members by weight. Classifiers average probabilities and answer in ``classes_``.

    Attributes:
        task: ``classification`` or ``regression``.
        members: ``[(pipelines, weight), ...]``.
        classes_: the original class labels (classification).
        learners: the learner name of each member.
        feature_names_in_: the raw input columns the model reads.
    """

    def __init__(
        self,
        task: str = "classification",
        members: list[tuple[list[Any], float]] | None = None,
        classes: list[Any] | None = None,
        learners: list[str] | None = None,
        feature_names: list[str] | None = None,
    ) -> None:
        self.task = task
        self.members = members
        self.classes = classes
        self.learners = learners
        self.feature_names = feature_names

    @property
    def classes_(self) -> np.ndarray[Any, Any]:
        return np.asarray(self.classes if self.classes is not None else [])

    @property
    def feature_names_in_(self) -> np.ndarray[Any, Any]:
        return np.asarray(self.feature_names or [], dtype=object)

    def fit(self, x: Any, y: Any = None) -> AutoMLModel:  # already fitted by the search
        return self

    def _frame(self, x: Any) -> pd.DataFrame:
        return x if isinstance(x, pd.DataFrame) else pd.DataFrame(x, columns=self.feature_names)

    def _array_featurizers(self) -> bool:
        from conveyor.train._featurize import Featurizer

        steps = [getattr(p, "named_steps", {}).get("features") for ps, _ in self.members or [] for p in ps]
        return bool(steps) and all(isinstance(s, Featurizer) for s in steps)

    def _member_output(self, pipelines: list[Any], frame: Any) -> np.ndarray[Any, Any]:
        outputs = []
        k = len(self.classes_)
        for pipeline in pipelines:
            if self.task == "classification":
                proba = np.asarray(pipeline.predict_proba(frame), dtype=float)
                columns = np.asarray(pipeline.classes_, dtype=int)
                full = np.zeros((len(proba), k))
                full[:, columns] = proba
                outputs.append(full)
            else:
                outputs.append(np.asarray(pipeline.predict(frame), dtype=float))
        return np.asarray(np.mean(outputs, axis=0))

    def _combined(self, x: Any) -> np.ndarray[Any, Any]:
        frame: Any = self._frame(x)
        if self._array_featurizers():  # the request's columns leave pandas once, not once per member and fold
            frame = {str(c): frame[c].to_numpy() for c in frame.columns}
        total = 0.0
        combined: np.ndarray[Any, Any] | None = None
        for pipelines, weight in self.members or []:
            out = self._member_output(pipelines, frame) * weight
            combined = out if combined is None else combined + out
            total += weight
        if combined is None:
            raise ValueError("The model has no members.")
        return combined / total

    # Only classifiers have it: ``hasattr(model, "predict_proba")`` is how serving, batch scoring and export tell.
    @available_if(lambda self: self.task == "classification")  # type: ignore[untyped-decorator]
    def predict_proba(self, x: Any) -> np.ndarray[Any, Any]:
        return self._combined(x)

    def predict(self, x: Any) -> np.ndarray[Any, Any]:
        combined = self._combined(x)
        if self.task == "classification":
            return np.asarray(self.classes_[combined.argmax(axis=1)])
        return combined


def select_ensemble(
    candidates: list[tuple[int, np.ndarray[Any, Any]]],
    y: np.ndarray[Any, Any],
    score: Callable[[np.ndarray[Any, Any], np.ndarray[Any, Any]], float],
    rounds: int = 20,
) -> tuple[dict[int, int], float]:
    """Greedy forward selection with replacement (Caruana et al., 2004) over out-of-fold predictions.

    ``candidates`` are ``(trial number, out-of-fold predictions)``, best first. Returns the weights (how many
    times each trial was picked) and the ensemble's score (greater is better).
    """
    weights: dict[int, int] = {}
    total: np.ndarray[Any, Any] | None = None
    best_score = -np.inf
    picks = 0
    for _ in range(rounds):
        round_best: tuple[float, int, np.ndarray[Any, Any]] | None = None
        for number, pred in candidates:
            trial_total = pred if total is None else total + pred
            value = score(y, trial_total / (picks + 1))
            if round_best is None or value > round_best[0]:
                round_best = (value, number, trial_total)
        assert round_best is not None
        value, number, trial_total = round_best
        if value <= best_score + 1e-12 and picks > 0:
            break
        best_score, total, picks = value, trial_total, picks + 1
        weights[number] = weights.get(number, 0) + 1
    return weights, float(best_score)
