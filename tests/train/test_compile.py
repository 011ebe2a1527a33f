"""AutoML models score through ONNX Runtime once compiled: every built-in learner of both tabular tasks converts,
agrees with itself to 1e-5 (missing values included), survives a store and load, and falls back to the
learner itself, with the reason recorded, where a conversion is refused."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conveyor.registry._formats import dump_model, load_model
from conveyor.registry._onnx import compile_automl
from conveyor.train._ensemble import AutoMLModel
from conveyor.train._featurize import infer_column_kinds
from conveyor.train._learners import LEARNERS, SPACES, build_model


def _frame(rows: int = 300, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.normal(50, 10, rows),
            "rooms": rng.integers(1, 6, rows).astype(float),
            "kind": rng.choice(np.array(["flat", "house", "loft", None], dtype=object), rows),
            "built": pd.date_range("1990-01-01", periods=rows, freq="17D").strftime("%Y-%m-%d"),
        }
    )
    frame.loc[rng.random(rows) < 0.1, "size"] = np.nan  # missing numbers reach the trees as NaN
    return frame


def _target(frame: pd.DataFrame, task: str) -> np.ndarray[Any, Any]:
    value = frame["size"].fillna(50).to_numpy() * 2 + frame["rooms"].to_numpy() * 5
    value += np.where(frame["kind"] == "house", 30.0, 0.0)
    if task == "regression":
        return np.asarray(value, dtype=float)
    return np.asarray(np.digitize(value, np.quantile(value, [0.33, 0.66])))  # three classes, encoded 0..2


def _model(learners: list[str], task: str, frame: pd.DataFrame) -> AutoMLModel:
    kinds = infer_column_kinds(frame)
    y = _target(frame, task)
    members = []
    for learner in learners:
        params = {p.name: p.default for p in SPACES[learner]}
        if learner == "linear":
            params = {"C": 1.0} if task == "classification" else {"alpha": 1.0, "l1_ratio": 0.0}
        if learner in ("random_forest", "extra_trees"):
            params["n_estimators"] = 20
        pipeline = build_model({"learner": learner, "params": params}, kinds, task, 3, seed=0, n_jobs=1)
        members.append(([pipeline.fit(frame, y)], 1.0))
    classes = ["low", "mid", "high"] if task == "classification" else None
    return AutoMLModel(task, members, classes, learners, list(frame.columns))


def _scores(model: AutoMLModel, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    return np.asarray(model.predict_proba(frame) if model.task == "classification" else model.predict(frame))


def _agree(actual: Any, expected: Any) -> None:
    """Within the conversion check's tolerance: 1e-5 on probabilities, 1e-5 relative on predicted values."""
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_every_learner_converts_and_agrees_with_itself(task: str) -> None:
    frame = _frame()
    native = _model(list(LEARNERS), task, frame)
    expected = _scores(native, frame)
    compiled = pickle.loads(pickle.dumps(native))
    note = compile_automl(compiled, frame.head(100))
    assert note.startswith(f"onnx ({len(LEARNERS)} learner(s) checked"), note
    assert compiled.inference == note and compiled.compiled is not None
    assert all(data is not None for row in compiled.compiled for data in row)
    # The trees share one feature matrix; the linear model has its own (scaled) featuriser.
    assert len({g for row in compiled.feature_groups or [] for g in row}) == 2
    _agree(_scores(compiled, frame), expected)
    # Rows the check never saw, missing values and unknown levels included, and one row alone.
    unseen = _frame(50, seed=9).assign(kind=np.array(["castle", None] * 25, dtype=object))
    _agree(_scores(compiled, unseen), _scores(native, unseen))
    _agree(_scores(compiled, unseen.head(1)), _scores(native, unseen.head(1)))
    # A request's columns as arrays (what serving hands over) give the same answer as the frame.
    columns = {c: unseen[c].to_numpy() for c in unseen.columns}
    _agree(_scores(compiled, columns), _scores(native, unseen))  # type: ignore[arg-type]


def test_a_compiled_model_survives_the_model_store_and_keeps_scoring_through_onnx() -> None:
    frame = _frame()
    model = _model(["xgboost", "lightgbm"], "classification", frame)
    expected = _scores(model, frame)
    compile_automl(model, frame.head(100))
    stored = dump_model(model)
    assert stored.format == "skops", stored.reason  # no pickle needed for the ONNX bytes
    loaded = load_model(stored.format, stored.data, stored.trusted_types, what="test")
    assert loaded.inference == model.inference
    assert loaded._sessions() is not None  # sessions are made again after loading (never stored)
    assert loaded.scoring == "onnx"
    _agree(_scores(loaded, frame), expected)


def test_a_learner_that_cannot_convert_stays_native_and_says_why() -> None:
    from sklearn.kernel_ridge import KernelRidge

    frame = _frame()
    model = _model(["random_forest", "linear"], "regression", frame)
    # A learner skl2onnx has no converter for (none of AutoML's own: a model built around its pipelines).
    pipeline = (model.members or [])[1][0][0]
    learner = KernelRidge(alpha=1.0).fit(
        pipeline.named_steps["features"].transform(frame), _target(frame, "regression")
    )
    pipeline.steps[-1] = ("learner", learner)
    expected = _scores(model, frame)
    note = compile_automl(model, frame.head(100))
    assert note.startswith("onnx for 1 of 2 learners; the rest native: KernelRidge cannot be converted"), note
    assert model.compiled is not None and model.compiled[0][0] is not None and model.compiled[1] == [None]
    _agree(_scores(model, frame), expected)


def test_no_time_left_leaves_the_model_native() -> None:
    frame = _frame()
    model = _model(["hist_gb"], "classification", frame)
    note = compile_automl(model, frame.head(50), deadline=0.0)
    assert note == "native (no time left in the budget to convert)"
    assert model.compiled is None and model._sessions() is None and model.scoring == "native"
    assert _scores(model, frame).shape == (len(frame), 3)


def test_a_model_stored_before_compilation_existed_still_scores() -> None:
    frame = _frame()
    model = _model(["linear"], "classification", frame)
    for attribute in ("compiled", "feature_groups", "inference"):
        del model.__dict__[attribute]
    assert _scores(model, frame).shape == (len(frame), 3)


def test_a_forest_too_large_to_convert_in_the_time_left_stays_native(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from conveyor.registry import _onnx

    frame = _frame()
    model = _model(["random_forest", "linear"], "classification", frame)
    # As if each node took a second to convert: the forest's estimate is far past a deadline 60 s away.
    monkeypatch.setattr(_onnx, "_SECONDS_PER_NODE", 1.0)
    note = compile_automl(model, frame.head(50), deadline=time.monotonic() + 60)
    assert "converting RandomForestClassifier would take about" in note and "past the time budget" in note, note
    assert model.compiled is not None and model.compiled[0] == [None] and model.compiled[1][0] is not None


def test_without_onnxruntime_a_compiled_model_scores_natively_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    frame = _frame()
    model = _model(["lightgbm"], "classification", frame)
    expected = _scores(model, frame)
    compile_automl(model, frame.head(50))
    loaded = pickle.loads(pickle.dumps(model))  # as an MLflow export is loaded where onnxruntime is missing
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert loaded.inference.startswith("onnx (") and loaded.scoring == "native (onnxruntime is not installed here)"
    _agree(_scores(loaded, frame), expected)
