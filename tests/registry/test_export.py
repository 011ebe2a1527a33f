"""Exports: an MLflow model the real ``mlflow.pyfunc`` loads, and ONNX checked against the model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conveyor.errors import BadInput, Conflict
from conveyor.registry import NotConvertible
from conveyor.registry._onnx import onnx_feeds


def test_the_real_mlflow_loads_an_export_and_predicts_like_conveyor(
    workspace, churn, conveyor_pipeline, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import mlflow.pyfunc  # the dev extra installs mlflow-skinny: never skipped

    x, _ = churn
    with workspace.runs.start("churn") as run:
        workspace.models.log_model(run.id, conveyor_pipeline, input_example=x)
    v = workspace.models.register_from_run(run.id, "churn")
    result = workspace.models.export("churn:1", tmp_path / "out", format="mlflow")
    # Conveyor's featurisation travels as code (MLflow code_paths): no requirement on Conveyor itself.
    runtime = [f for f in result.files if f.startswith("code/")]
    assert [f for f in result.files if f not in runtime] == [
        "MLmodel", "conda.yaml", "model.pkl", "python_env.yaml", "requirements.txt"
    ]  # fmt: skip
    assert {f.split("/")[1] for f in runtime} == {f"conveyor_runtime_{runtime[0].split('_')[2][:12]}"}
    assert any(f.endswith("/train/_featurize.py") for f in runtime)
    mlmodel = yaml.safe_load((tmp_path / "out" / "MLmodel").read_text())
    assert set(mlmodel["flavors"]) == {"python_function", "sklearn"}
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "cloudpickle"
    assert mlmodel["flavors"]["python_function"]["code"] == "code"
    assert mlmodel["metadata"]["conveyor_model"] == "churn:1"
    requirements = (tmp_path / "out" / "requirements.txt").read_text().split()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert any(r.startswith("cloudpickle==") for r in requirements)
    assert not [r for r in requirements if "conveyor" in r]

    loaded = mlflow.pyfunc.load_model(str(tmp_path / "out"))
    schema = loaded.metadata.get_input_schema()
    assert schema.input_names() == ["tenure", "charges", "plan", "city"]
    conveyor_predictions = workspace.models.load(v).predict(x)
    np.testing.assert_array_equal(np.asarray(loaded.predict(x)), conveyor_predictions)
    assert (conveyor_predictions == conveyor_pipeline.predict(x)).all()


def test_a_joblib_model_is_exported_as_a_pickle_mlflow_reads(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from functools import partial

    import mlflow.pyfunc
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from conveyor.registry import infer_signature

    x = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    model = make_pipeline(FunctionTransformer(partial(np.multiply, 3)), LinearRegression()).fit(x, [3.0, 6.0, 9.0])
    v = workspace.models.register("triple", model, signature=infer_signature(x))
    assert v.format == "joblib"
    result = workspace.models.export("triple", tmp_path / "out")
    assert "model.pkl" in result.files
    predictions = mlflow.pyfunc.load_model(str(tmp_path / "out")).predict(x)
    np.testing.assert_allclose(predictions, [3.0, 6.0, 9.0])
    np.testing.assert_array_equal(predictions, model.predict(x))


def test_export_refuses_a_non_empty_folder_unless_forced(workspace, fitted_small, tmp_path) -> None:  # type: ignore[no-untyped-def]
    workspace.models.register("clf", fitted_small)
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(Conflict, match="is not empty.*--force"):
        workspace.models.export("clf", target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"], "nothing written"
    workspace.models.export("clf", target, force=True)
    assert (target / "MLmodel").exists() and not (target / "notes.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left behind"
    with pytest.raises(Conflict, match="is a file"):
        workspace.models.export("clf", target / "MLmodel")
    with pytest.raises(BadInput, match="Unknown export format 'pmml'"):
        workspace.models.export("clf", tmp_path / "new", format="pmml")  # type: ignore[arg-type]


@pytest.fixture
def fitted_small():  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(size=80), "b": rng.normal(size=80)})
    return LogisticRegression().fit(x, (x["a"] > 0).astype(int))


# -- ONNX ----------------------------------------------------------------------------------------------


def _onnx_probabilities(folder: Path, frame: pd.DataFrame) -> np.ndarray:
    import json

    import onnxruntime as ort

    info = json.loads((folder / "conveyor-onnx.json").read_text())
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    per_column = len(info["inputs"]) > 1 or info["inputs"][0]["name"] != "input"
    return np.asarray(session.run(None, onnx_feeds(frame, info["inputs"], info["missing_text"], per_column))[1])


def test_conveyor_featurisation_and_histogram_boosting_convert_to_equivalent_onnx(
    workspace, churn, conveyor_pipeline, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    x, _ = churn
    v = workspace.models.register("churn", conveyor_pipeline, input_example=x)
    result = workspace.models.export("churn:1", tmp_path / "onnx", format="onnx")
    assert result.files == ["conveyor-onnx.json", "model.onnx"]
    assert result.max_abs_diff is not None and result.max_abs_diff <= 1e-5
    assert result.rows_checked == 200
    stored = workspace.models.get("churn:1").files["model.onnx"]
    assert stored["max_abs_diff"] == result.max_abs_diff and stored["digest"].startswith("sha256:")
    assert stored["classes"] == conveyor_pipeline.classes_.tolist(), "so serving needs only the ONNX file"
    assert workspace.models.get(v.ref).format == "skops", "the model file itself never changes"
    # Rows it was not checked on, with unseen levels and missing values, still agree.
    fresh, _ = __import__("tests.registry.conftest", fromlist=["churn_frame"]).churn_frame(n=300, seed=9)
    fresh.loc[0, "city"] = "never-seen"
    fresh.loc[1, "plan"] = None
    expected = conveyor_pipeline.predict_proba(fresh)
    assert np.abs(_onnx_probabilities(tmp_path / "onnx", fresh) - expected).max() <= 1e-5


def test_column_transformer_one_hot_and_random_forest_convert(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    x = pd.DataFrame({"size": rng.normal(size=400), "color": rng.choice(["red", "green", "blue"], 400)})
    y = ((x["size"] > 0) | (x["color"] == "red")).astype(int)
    model = Pipeline(
        [
            ("encode", ColumnTransformer([("num", "passthrough", ["size"]), ("cat", OneHotEncoder(), ["color"])])),
            ("forest", RandomForestClassifier(n_estimators=20, random_state=0)),
        ]
    ).fit(x, y)
    workspace.models.register("forest", model)
    with pytest.raises(BadInput, match="no stored input example.*--data"):
        workspace.models.to_onnx("forest:1")
    converted = workspace.models.to_onnx("forest:1", validation=x)
    assert converted.max_abs_diff <= 1e-5 and converted.rows_checked == 400
    assert [i["name"] for i in converted.inputs] == ["size", "color"]


def test_models_onnx_cannot_express_are_refused_with_the_reason(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    from conveyor.train._featurize import build_featurizer, infer_column_kinds

    rng = np.random.default_rng(4)
    x = pd.DataFrame(
        {"amount": rng.normal(size=200), "signed_up": pd.date_range("2024-01-01", periods=200).astype(str)}
    )
    y = (x["amount"] > 0).astype(int)
    model = Pipeline(
        [("features", build_featurizer(infer_column_kinds(x))), ("learner", HistGradientBoostingClassifier())]
    ).fit(x, y)
    workspace.models.register("dated", model, input_example=x)
    with pytest.raises(NotConvertible, match="calendar features from date columns.*signed_up") as info:
        workspace.models.export("dated", tmp_path / "out", format="onnx")
    assert info.value.exit_code == 2
    assert not (tmp_path / "out").exists()
    assert "model.onnx" not in workspace.models.get("dated").files


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_boosting_libraries_convert_through_onnxmltools(workspace, library: str) -> None:  # type: ignore[no-untyped-def]
    # Both are core dependencies: a missing one must fail here, not skip.
    importlib.import_module(library)
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(5)
    x = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "c": rng.choice(["x", "y"], 500)})
    y = ((x["a"] + x["b"] > 0) ^ (x["c"] == "x")).astype(int)
    if library == "lightgbm":
        from lightgbm import LGBMClassifier

        learner = LGBMClassifier(n_estimators=30, verbose=-1)
    else:
        from xgboost import XGBClassifier

        learner = XGBClassifier(n_estimators=30, max_depth=3)
    model = Pipeline(
        [
            ("encode", ColumnTransformer([("num", "passthrough", ["a", "b"]), ("cat", OneHotEncoder(), ["c"])])),
            ("learner", learner),
        ]
    ).fit(x, y)
    v = workspace.models.register(library, model, input_example=x)
    assert any(r.startswith(f"{library}==") for r in v.requirements)
    converted = workspace.models.to_onnx(library)
    assert converted.max_abs_diff <= 1e-5
