"""Model cards: SHAP for tree and linear models, permutation importance for the rest, fairness by group equal to
hand-computed rates, stored once with the version, and the CLI, REST and studio faces."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import BadInput
from conveyor.workspace import Workspace


def _data(n: int = 1_500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"x": rng.normal(size=n), "noise": rng.normal(size=n), "group": rng.choice(["a", "b"], size=n)}
    )
    # The label leans on x, and group b gets positives more often: a card must show both.
    frame["y"] = ((frame["x"] + 0.8 * (frame["group"] == "b") + rng.normal(0, 0.3, n)) > 0.4).astype(int)
    frame["g"] = (frame["group"] == "b").astype(int)
    return frame


def _register(ws: Workspace, model: Any, frame: pd.DataFrame, inputs: list[str], name: str, sensitive: str = "") -> str:
    data, _ = ws.data.commit_table(pa.Table.from_pandas(frame), name=f"{name}-data", source={"kind": "test"})
    with ws.runs.start("cards", name=name, tags={"sensitive": sensitive} if sensitive else None) as run:
        run.log_input(data)
        run.log_params({"target": "y"})
        run.log_model(model.fit(frame[inputs], frame["y"]), input_example=frame[inputs].head(10))
        run.log_metrics({"test_accuracy": 0.9})
    return ws.models.register_from_run(run.id, name).ref


def test_a_tree_models_card_explains_with_shap_and_compares_groups(workspace) -> None:  # type: ignore[no-untyped-def]
    from sklearn.ensemble import RandomForestClassifier

    frame = _data()
    ref = _register(
        workspace, RandomForestClassifier(n_estimators=30, random_state=0), frame, ["x", "noise", "g"], "rf", "group"
    )
    card = workspace.cards.get(ref, sample=800)
    ex = card.explanations
    assert ex["method"].startswith("SHAP (TreeExplainer)") and ex["rows"] == 800
    assert ex["global"][0]["feature"] == "x" and ex["global"][-1]["feature"] == "noise"  # x decides, noise does not
    assert len(ex["local"]) == 3 and all(len(row["contributions"]) == 3 for row in ex["local"])
    # Fairness equals the rates computed by hand on the same sample.
    sample = frame.sample(800, random_state=0)
    predicted = workspace.models.load(ref).predict(sample[["x", "noise", "g"]])
    rates = {grp: float(predicted[(sample["group"] == grp).to_numpy()].mean()) for grp in ("a", "b")}
    groups = card.fairness["by_feature"]["group"]
    assert groups["groups"]["a"]["selection_rate"] == pytest.approx(rates["a"])
    assert groups["groups"]["b"]["selection_rate"] == pytest.approx(rates["b"])
    assert groups["demographic_parity_difference"] == pytest.approx(abs(rates["b"] - rates["a"]))
    assert 0 <= groups["equalized_odds_difference"] <= 1
    assert card.metrics["test_accuracy"] == 0.9 and card.data["rows"] == len(frame)
    assert any(n["kind"] == "data_version" for n in card.lineage)
    text = card.to_markdown()
    assert "## Fairness" in text and "demographic parity difference" in text and "| x |" in text
    # Stored with the version: read back, not recomputed; owner and intended use are the version's tags.
    workspace.cards.describe(ref, owner="risk team", intended_use="Monthly offers")
    again = workspace.cards.get(ref)
    assert again.created_at == card.created_at and again.owner == "risk team"


def test_linear_models_use_shap_and_other_models_permutation_importance(workspace) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame = _data(seed=1)
    linear = workspace.cards.get(_register(workspace, LogisticRegression(), frame, ["x", "noise"], "lin"))
    assert linear.explanations["method"].startswith("SHAP (LinearExplainer)")
    assert linear.explanations["global"][0]["feature"] == "x"
    assert "No sensitive feature declared" in linear.fairness["skipped"]
    piped = workspace.cards.get(_register(workspace, make_pipeline(StandardScaler(), LogisticRegression()), frame,
                                          ["x", "noise"], "pipe"))  # fmt: skip
    assert piped.explanations["method"].startswith("permutation importance")
    assert piped.explanations["global"][0]["feature"] == "x" and piped.explanations["local"] == []
    with pytest.raises(BadInput, match="has no column nope"):
        workspace.cards.get("pipe:1", sensitive=["nope"])


def test_a_regressors_fairness_is_its_error_by_group(workspace) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LinearRegression

    frame = _data(seed=2)
    frame["y"] = 2 * frame["x"] + np.where(frame["group"] == "b", 1.0, 0.0) * np.random.default_rng(3).normal(
        0, 2, len(frame)
    )
    ref = _register(workspace, LinearRegression(), frame, ["x"], "reg", "group")
    card = workspace.cards.get(ref)
    assert card.task == "regression"
    found = card.fairness["by_feature"]["group"]
    assert found["groups"]["b"]["mean_absolute_error"] > found["groups"]["a"]["mean_absolute_error"]
    assert found["max_error_difference"] == pytest.approx(
        found["groups"]["b"]["mean_absolute_error"] - found["groups"]["a"]["mean_absolute_error"]
    )


def test_card_faces_cli_rest_and_studio(workspace, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.tree import DecisionTreeClassifier

    from tests.api_client import api_client, token_for

    ref = _register(workspace, DecisionTreeClassifier(max_depth=3, random_state=0), _data(seed=4), ["x", "g"], "tree")
    home = str(workspace.settings.home)
    reader, writer = api_client(workspace, "reader"), api_client(workspace, "data-scientist")
    assert reader.get(f"/api/v1/models/{ref}/card").status_code == 404
    assert reader.post(f"/api/v1/models/{ref}/card", json={}).status_code == 403
    made = writer.post(f"/api/v1/models/{ref}/card", json={"sensitive": ["group"], "owner": "ops"})
    assert made.status_code == 200 and made.json()["owner"] == "ops"
    assert reader.get(f"/api/v1/models/{ref}/card").json()["fairness"]["by_feature"]["group"]
    shown = cli("--home", home, "models", "card", ref, "--json")
    assert shown.code == 0 and shown.json["explanations"]["method"].startswith("SHAP")
    out = tmp_path / "card.md"
    written = cli("--home", home, "models", "card", ref, "--intended-use", "Triage", "-o", str(out))
    assert written.code == 0 and "**Intended use**: Triage" in out.read_text()
    bad = cli("--home", home, "models", "card", ref, "--sensitive", "nope")
    assert bad.code == 2 and "no column nope" in bad.err
    from fastapi.testclient import TestClient

    from conveyor.api import create_app

    studio = TestClient(create_app(workspace), base_url="http://127.0.0.1")
    studio.post("/login", data={"token": token_for(workspace, "reader"), "next": "/"})
    page = studio.get(f"/models/{ref}/card")
    assert page.status_code == 200 and "demographic parity difference" in page.text and "Plotly.newPlot" in page.text


def test_an_automl_models_card_records_the_sensitive_column_given_to_train(workspace, cli) -> None:  # type: ignore[no-untyped-def]
    frame = _data(n=800, seed=5).drop(columns=["g"])
    workspace.data.commit_table(pa.Table.from_pandas(frame), name="people", source={"kind": "test"})
    home = str(workspace.settings.home)
    trained = cli("--home", home, "train", "--data", "people", "--target", "y", "--time-budget", "10",
                  "--sensitive", "group", "--register", "auto", "--json")  # fmt: skip
    assert trained.code == 0, trained.err
    card = workspace.cards.get("auto:1")
    assert card.explanations["method"].startswith("permutation importance")  # AutoML featurises inside
    assert card.explanations["global"][0]["feature"] in ("x", "group")
    assert set(card.fairness["by_feature"]["group"]["groups"]) == {"a", "b"}
    assert card.metrics and "test_roc_auc" in card.metrics
