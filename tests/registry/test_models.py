"""The registry: versions with signature and requirements, aliases, verified loading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.errors import ArtifactCorrupted, BadInput, Conflict, NotFound
from conveyor.registry import infer_signature


@pytest.fixture
def fitted() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    y = (x["a"] + x["b"] > 0).astype(int)
    return LogisticRegression().fit(x, y), x


def test_register_get_alias_and_load(any_workspace, fitted) -> None:  # type: ignore[no-untyped-def]
    model, x = fitted
    ws = any_workspace
    with ws.runs.start("exp") as run:
        pass
    signature = infer_signature(x, model.predict(x))
    v1 = ws.models.register("clf", model, run_id=run.id, signature=signature, metrics={"auc": 0.9})
    v2 = ws.models.register("clf", model)
    assert (v1.ref, v2.ref) == ("clf:1", "clf:2")
    assert v1.signature["inputs"] == [
        {"name": "a", "type": "double", "required": True},
        {"name": "b", "type": "double", "required": True},
    ]
    assert v1.signature["outputs"][0]["type"] == "long"
    dated = infer_signature(pd.DataFrame({"d": pd.to_datetime(["2024-01-01"]).date, "t": ["x"]}))
    assert [c["type"] for c in dated["inputs"]] == ["datetime", "string"]
    assert any(r.startswith("scikit-learn==") for r in v1.requirements)
    assert ws.models.get("clf").version == 2
    ws.models.set_alias("clf", "champion", 1)
    assert ws.models.get("clf@champion").id == v1.id
    assert ws.models.get("clf:1").aliases == ["champion"]
    ws.models.set_alias("clf", "champion", 2)
    assert ws.models.get("clf@champion").version == 2
    loaded = ws.models.load("clf@champion")
    assert (loaded.predict(x) == model.predict(x)).all()
    assert [(m.name, m.latest_version, m.versions, m.aliases) for m in ws.models.list()] == [
        ("clf", 2, 2, {"champion": 2})
    ]
    edges = ws.lineage.edges("run", run.id)
    assert [(e.relation, e.to_kind, e.to_id) for e in edges] == [("produced", "model_version", v1.id)]


def test_a_tampered_model_file_is_never_loaded(workspace, fitted) -> None:  # type: ignore[no-untyped-def]
    model, _ = fitted
    v = workspace.models.register("clf", model)
    path = workspace.artifacts._path(v.digest)
    os.chmod(path, 0o644)
    data = bytearray(Path(path).read_bytes())
    data[-10] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted, match=v.digest):
        workspace.models.load("clf:1")


def test_registration_errors(workspace, fitted) -> None:  # type: ignore[no-untyped-def]
    model, _ = fitted
    with pytest.raises(NotFound, match="No run with id 'missing'"):
        workspace.models.register("clf", model, run_id="missing")
    with pytest.raises(ZeroDivisionError), workspace.runs.start() as run:
        _ = 1 / 0
    with pytest.raises(Conflict, match="failed; register models only from runs that finished"):
        workspace.models.register("clf", model, run_id=run.id)
    assert workspace.models.list() == [], "nothing half-registered"
    workspace.models.register("clf", model)
    with pytest.raises(NotFound, match="has no version 5"):
        workspace.models.set_alias("clf", "champion", 5)
    with pytest.raises(BadInput, match="'latest' always means"):
        workspace.models.set_alias("clf", "latest", 1)
    with pytest.raises(NotFound, match="no alias 'champ'.*Did you mean"):
        workspace.models.set_alias("clf", "champion", 1)
        workspace.models.get("clf@champ")
    with pytest.raises(NotFound, match="Did you mean 'clf'"):
        workspace.models.get("clff")


# -- models logged into runs, registered from them ----------------------------------------------------


def test_a_model_logged_into_a_run_is_registered_with_signature_requirements_metrics_and_lineage(  # type: ignore[no-untyped-def]
    any_workspace, churn, conveyor_pipeline, tmp_path: Path
) -> None:
    ws = any_workspace
    x, y = churn
    csv = tmp_path / "churn.csv"
    x.assign(churned=y).to_csv(csv, index=False)
    data = ws.data.ingest(csv, name="churn").version
    with ws.runs.start("churn") as run:
        run.log_input(data)
        run.log_metric("roc_auc", 0.5, step=0)
        run.log_metric("roc_auc", 0.91, step=1)
        logged = ws.models.log_model(run.id, conveyor_pipeline, input_example=x, metrics={"f1": 0.8})
    assert logged.format == "skops"
    assert logged.uri == f"runs:/{run.id}/model"
    paths = {a.path for a in ws.runs.get(run.id).artifacts}
    assert {"model/model.skops", "model/conveyor-model.json", "model/input_example.parquet"} <= paths

    v = ws.models.register_from_run(run.id, "churn", tags={"team": "growth"}, description="first")
    assert (v.ref, v.format, v.run_id, v.inputs) == ("churn:1", "skops", run.id, [data.ref])
    assert v.metrics == {"roc_auc": 0.91, "f1": 0.8}
    assert [c["name"] for c in v.signature["inputs"]] == ["tenure", "charges", "plan", "city"]
    assert {c["name"]: c["required"] for c in v.signature["inputs"]}["charges"] is False
    assert v.signature["outputs"][0]["type"] == "long"
    assert any(r.startswith("skops==") for r in v.requirements)
    assert any(r.startswith("conveyor-ml==") for r in v.requirements), "the model holds Conveyor's featurisation"
    assert "conveyor.train._featurize.categories_as_text" in v.trusted_types
    assert (v.tags, v.description) == ({"team": "growth"}, "first")
    edges = ws.lineage.edges("run", run.id)
    assert ("produced", "model_version", v.id) in [(e.relation, e.to_kind, e.to_id) for e in edges]

    ws.models.set_alias("churn", "champion", 1)
    loaded = ws.models.load("churn@champion")
    assert (loaded.predict_proba(x) == conveyor_pipeline.predict_proba(x)).all()


def test_tags_are_set_and_removed_and_aliases_removed(workspace, fitted) -> None:  # type: ignore[no-untyped-def]
    model, _ = fitted
    workspace.models.register("clf", model)
    assert workspace.models.set_tags("clf:1", {"stage": "prod", "owner": "ana"}).tags == {
        "stage": "prod",
        "owner": "ana",
    }
    assert workspace.models.delete_tags("clf:1", ["owner"]).tags == {"stage": "prod"}
    with pytest.raises(NotFound, match="has no tag 'stag'.*Did you mean 'stage'"):
        workspace.models.delete_tags("clf:1", ["stag"])
    with pytest.raises(BadInput, match="No tags given"):
        workspace.models.set_tags("clf:1", {})
    workspace.models.set_alias("clf", "champion", 1)
    workspace.models.delete_alias("clf", "champion")
    assert workspace.models.get("clf:1").aliases == []
    with pytest.raises(NotFound, match="no alias 'champion'"):
        workspace.models.delete_alias("clf", "champion")


def test_models_skops_cannot_hold_are_stored_with_joblib_and_still_verified(workspace) -> None:  # type: ignore[no-untyped-def]
    from functools import partial

    from sklearn.preprocessing import FunctionTransformer

    x = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    model = FunctionTransformer(partial(np.multiply, 2)).fit(x)
    v = workspace.models.register("doubler", model)
    assert v.format == "joblib" and v.trusted_types == []
    assert workspace.models.load("doubler:1").transform(x)["a"].tolist() == [2.0, 4.0, 6.0]


def test_registering_from_a_run_that_failed_or_logged_nothing_registers_nothing(workspace, fitted) -> None:  # type: ignore[no-untyped-def]
    model, x = fitted
    with workspace.runs.start("exp") as empty:
        pass
    with pytest.raises(NotFound, match="logged no model under 'model'. Log one first"):
        workspace.models.register_from_run(empty.id, "clf")
    with pytest.raises(ZeroDivisionError), workspace.runs.start("exp") as failed:
        workspace.models.log_model(failed.id, model, input_example=x)
        _ = 1 / 0
    with pytest.raises(Conflict, match="failed; register models only from runs that finished"):
        workspace.models.register_from_run(failed.id, "clf")
    with workspace.runs.start("exp") as other:
        workspace.models.log_model(other.id, model, name="classifier")
    with pytest.raises(NotFound, match="under: classifier.*Did you mean 'classifier'"):
        workspace.models.register_from_run(other.id, "clf", "clasifier")
    with pytest.raises(NotFound, match="No run with id 'nope'"):
        workspace.models.register_from_run("nope", "clf")
    assert workspace.models.list() == [], "nothing half-registered"


def test_a_tampered_skops_file_is_refused_with_exit_code_2(workspace, churn, conveyor_pipeline) -> None:  # type: ignore[no-untyped-def]
    from conveyor.registry import ModelCorrupted

    x, _ = churn
    v = workspace.models.register("churn", conveyor_pipeline, input_example=x)
    assert v.format == "skops"
    path = Path(workspace.artifacts._path(v.digest))
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelCorrupted, match="no longer match the SHA-256") as info:
        workspace.models.load("churn:1")
    assert info.value.exit_code == 2 and info.value.http_status == 409
