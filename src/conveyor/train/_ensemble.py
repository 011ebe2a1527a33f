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

    Once compiled (``conveyor.registry._onnx.compile_automl``) each learner also has an ONNX graph checked
    against it, and a prediction runs the featurisers (NumPy, each distinct one once) and then the learners'
    graphs in ONNX Runtime; without onnxruntime installed, or for a learner that did not convert, the learner
    itself answers.

    Attributes:
        task: ``classification`` or ``regression``.
        members: ``[(pipelines, weight), ...]``.
        classes_: the original class labels (classification).
        learners: the learner name of each member.
        feature_names_in_: the raw input columns the model reads.
        compiled: per member, per pipeline, the learner's ONNX graph (or None); None when not compiled.
        feature_groups: per member, per pipeline, which distinct featuriser makes its features.
        inference: how the model scores (``onnx (...)`` or ``native (why)``).
    """

    def __init__(
        self,
        task: str = "classification",
        members: list[tuple[list[Any], float]] | None = None,
        classes: list[Any] | None = None,
        learners: list[str] | None = None,
        feature_names: list[str] | None = None,
        compiled: list[list[bytes | None]] | None = None,
        feature_groups: list[list[int]] | None = None,
        inference: str = "native",
    ) -> None:
        self.task = task
        self.members = members
        self.classes = classes
        self.learners = learners
        self.feature_names = feature_names
        self.compiled = compiled
        self.feature_groups = feature_groups
        self.inference = inference

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_runtime", None)  # ONNX Runtime sessions: made again on first use after loading
        return state

    @property
    def scoring(self) -> str:
        """How this model scores here: ``onnx`` (its compiled learners through ONNX Runtime), or ``native`` and
        why (``inference`` records what was converted when AutoML made it, wherever it is loaded later)."""
        if self._sessions() is not None:
            return "onnx"
        if getattr(self, "compiled", None) is not None:
            return "native (onnxruntime is not installed here)"
        return "native"

    #: Serving may hand ``predict`` a dict of column arrays instead of a DataFrame (see ``_columns``).
    takes_columns = True

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

    def _sessions(self) -> list[list[Any]] | None:
        """The compiled learners' ONNX Runtime sessions with their input's name and whether it takes float32 (None
        where a learner answers itself), made once; None when the model is not compiled or onnxruntime is missing."""
        runtime: tuple[list[list[Any]] | None] | None = self.__dict__.get("_runtime")
        if runtime is not None:
            return runtime[0]
        sessions: list[list[Any]] | None = None
        compiled = getattr(self, "compiled", None)  # models stored before compilation existed lack it
        if compiled is not None and getattr(self, "feature_groups", None) is not None and self._array_featurizers():
            try:
                import onnxruntime as ort
            except ImportError:
                pass
            else:
                options = ort.SessionOptions()
                options.intra_op_num_threads = 1  # serving runs one worker per core already
                options.inter_op_num_threads = 1
                sessions = [
                    [None if data is None else _session(ort, data, options) for data in row] for row in compiled
                ]
        self.__dict__["_runtime"] = (sessions,)
        return sessions

    def _compiled_output(self, sessions: list[list[Any]], x: Any) -> np.ndarray[Any, Any]:
        columns = _columns(x, self.feature_names)
        assert self.feature_groups is not None
        features: dict[int, np.ndarray[Any, Any]] = {}
        k = len(self.classes_)
        total = 0.0
        combined: np.ndarray[Any, Any] | None = None
        for (pipelines, weight), groups, row in zip(self.members or [], self.feature_groups, sessions, strict=True):
            outputs: list[np.ndarray[Any, Any]] = []
            for pipeline, group, session in zip(pipelines, groups, row, strict=True):
                matrix = features.get(group)
                if matrix is None:
                    matrix = features[group] = pipeline.named_steps["features"].transform(columns)
                learner = pipeline.named_steps["learner"]
                if session is None:
                    out = learner.predict_proba(matrix) if self.task == "classification" else learner.predict(matrix)
                else:
                    runner, name, single = session
                    results = runner.run(None, {name: matrix.astype(np.float32) if single else matrix})
                    out = results[1] if self.task == "classification" else results[0]
                out = np.asarray(out, dtype=float)
                if self.task == "classification":
                    full = np.zeros((len(out), k))
                    full[:, np.asarray(learner.classes_, dtype=int)] = out
                    outputs.append(full)
                else:
                    outputs.append(out.reshape(-1))
            member = np.asarray(np.mean(outputs, axis=0)) * weight
            combined = member if combined is None else combined + member
            total += weight
        if combined is None:
            raise ValueError("The model has no members.")
        return combined / total

    def _combined(self, x: Any) -> np.ndarray[Any, Any]:
        sessions = self._sessions()
        if sessions is not None:
            return self._compiled_output(sessions, x)
        if isinstance(x, dict):
            x = pd.DataFrame(x, columns=self.feature_names)
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


def _session(ort: Any, data: bytes, options: Any) -> tuple[Any, str, bool]:
    """An ONNX Runtime session of one learner's graph, its input's name, and whether that input is float32."""
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    return session, feed.name, feed.type != "tensor(double)"


def _columns(x: Any, names: list[str] | None) -> dict[str, np.ndarray[Any, Any]]:
    """A request's columns as arrays by name, taken out of a DataFrame once (for every member)."""
    if isinstance(x, dict):
        return {str(k): np.asarray(v) for k, v in x.items()}
    if not isinstance(x, pd.DataFrame):
        x = pd.DataFrame(x, columns=names)
    # ``_iter_column_arrays`` is ~8x cheaper than one ``frame[name]`` per column on a 1-row request.
    arrays = x._iter_column_arrays() if hasattr(x, "_iter_column_arrays") else (x[c] for c in x.columns)
    return {str(c): np.asarray(a) for c, a in zip(x.columns, arrays, strict=True)}


def select_ensemble(
    candidates: list[tuple[int, np.ndarray[Any, Any]]],
    y: np.ndarray[Any, Any],
    score: Callable[[np.ndarray[Any, Any], np.ndarray[Any, Any]], float],
    rounds: int = 20,
    max_members: int | None = None,
) -> tuple[dict[int, int], float]:
    """Greedy forward selection with replacement (Caruana et al., 2004) over out-of-fold predictions.

    ``candidates`` are ``(trial number, out-of-fold predictions)``, best first. Once ``max_members`` distinct
    trials are picked, only those are picked again. Returns the weights (how many times each trial was picked)
    and the ensemble's score (greater is better).
    """
    weights: dict[int, int] = {}
    total: np.ndarray[Any, Any] | None = None
    best_score = -np.inf
    picks = 0
    for _ in range(rounds):
        round_best: tuple[float, int, np.ndarray[Any, Any]] | None = None
        for number, pred in candidates:
            if max_members is not None and len(weights) >= max_members and number not in weights:
                continue
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
