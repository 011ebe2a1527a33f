"""AutoML for real: small data, short budgets, real learners in a real worker process."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from conveyor.errors import BadInput, NotFound, ValidationFailed
from conveyor.train import AutoMLModel, build_featurizer, infer_column_kinds
from conveyor.train._automl import (
    _REFIT_SLACK,
    _candidates,
    _choose,
    _folds,
    _log_estimate,
    _prune,
    _refit_estimate,
    _refit_reserve,
)
from conveyor.train._ensemble import select_ensemble
from conveyor.train._guardrails import check_data
from conveyor.train._learners import EXPENSIVE, GROWN, LEARNERS, LOW_COST, SPACES, default_params, initial_points
from conveyor.train._metrics import resolve_metric, score
from tests.api_client import api_client


def mixed_frame(rows: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Numbers with missing values, categories (one of high cardinality), dates, free text, an identifier."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2])
    city = rng.choice([f"city_{i:03d}" for i in range(120)], rows)
    city_effect = {f"city_{i:03d}": rng.normal(0, 0.8) for i in range(120)}
    tenure = rng.gamma(2.0, 12.0, rows)
    charges = rng.normal(60, 20, rows)
    words = np.array(["late", "refund", "great", "slow", "support", "cancel", "happy", "price", "app", "crash"])
    notes = [" ".join(rng.choice(words, rng.integers(3, 7))) for _ in range(rows)]
    signup = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 700, rows), unit="D")
    logit = (
        -0.04 * tenure
        + 0.02 * (charges - 60)
        + np.where(plan == "basic", 0.8, -0.4)
        + np.array([city_effect[c] for c in city])
        + np.array([1.2 if "cancel" in n else 0.0 for n in notes])
    )
    churned = rng.random(rows) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:06d}" for i in range(rows)],
            "plan": plan,
            "city": city,
            "tenure": tenure,
            "charges": charges,
            "notes": notes,
            "signup": signup.strftime("%Y-%m-%d"),
            "region": "eu",  # constant
            "churned": np.where(churned, "yes", "no"),
        }
    )
    frame.loc[rng.random(rows) < 0.1, "charges"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "plan"] = None
    return frame


def within_budget(seconds: float, budget: float) -> bool:
    """The budget is honoured within 5% (docs/benchmarks.md measures it at 30 and 60 s on a quiet machine). With
    the few-second budgets of these tests the fixed end (evaluating, converting and storing the model) is a large
    share, and on a loaded 2-core machine it can run a second late; the tests allow that second, no more."""
    return seconds <= budget * 1.05 + 1.0


# -- pieces (no search) ---------------------------------------------------------------------------------


def test_column_kinds_cover_text_high_cardinality_identifiers_and_constants() -> None:
    kinds = infer_column_kinds(mixed_frame(), exclude=("churned",))
    assert kinds == {
        "customer_id": "ignored",
        "plan": "categorical",
        "city": "high_cardinality",
        "tenure": "numeric",
        "charges": "numeric",
        "notes": "text",
        "signup": "datetime",
        "region": "ignored",
    }


def test_featurizer_takes_raw_rows_with_unseen_levels_and_missing_values() -> None:
    frame = mixed_frame(400)
    x, y = frame.drop(columns=["churned"]), (frame["churned"] == "yes").astype(int)
    kinds = infer_column_kinds(x)
    for scale in (False, True):
        features = build_featurizer(kinds, scale=scale, target_type="binary").fit(x, y)
        odd = x.head(3).copy()
        odd.loc[:, "plan"] = ["never-seen", None, "pro"]
        odd.loc[:, "city"] = ["atlantis", None, "city_001"]
        odd.loc[:, "charges"] = [np.nan, 1e6, 3.0]
        out = features.transform(odd)
        assert out.shape[0] == 3
        if scale:  # linear models get no missing values
            assert np.isfinite(out).all()


def test_guardrails_report_imbalance_missing_cardinality_constants_and_leakage() -> None:
    rng = np.random.default_rng(1)
    n = 1000
    y = pd.Series(np.where(rng.random(n) < 0.08, "fraud", "ok"))
    x = pd.DataFrame(
        {
            "amount": rng.normal(size=n),
            "mostly_missing": np.where(rng.random(n) < 0.7, np.nan, 1.0),
            "constant": 1,
            "txn_id": [f"t{i}" for i in range(n)],
            "merchant": rng.choice([f"m{i}" for i in range(80)], n),
            "chargeback_flag": np.where(y == "fraud", 1.0, 0.0),  # known only after the outcome
        }
    )
    report = {g.check: g for g in check_data(x, y, infer_column_kinds(x), "classification")}
    assert report["class_imbalance"].status == "warning"
    assert "'fraud'" in report["class_imbalance"].message
    assert report["missing_values"].status == "warning"
    assert report["missing_values"].columns == ["mostly_missing"]
    assert report["constant_columns"].columns == ["constant"]
    assert set(report["high_cardinality"].columns) == {"merchant", "txn_id"}
    assert report["target_leakage"].status == "warning"
    assert report["target_leakage"].columns == ["chargeback_flag"]
    # The message gives the evidence and the threshold; a column the user vouches for is reported, not warned of.
    assert "a depth-4 tree on it is 100.0% accurate" in report["target_leakage"].message
    assert "threshold 99%" in report["target_leakage"].message
    allowed = {g.check: g for g in check_data(x, y, infer_column_kinds(x), "classification", 0, ["chargeback_flag"])}
    assert allowed["target_leakage"].status == "passed" and "Allowed by you" in allowed["target_leakage"].message


def test_the_useless_model_guardrail_compares_with_the_trivial_model() -> None:
    from conveyor.train._guardrails import check_model

    worse = check_model("regression", {"r2": -0.2, "rmse": 3.0}, np.zeros(10), "test split")
    assert worse.status == "warning" and "R² -0.200 ≤ 0" in worse.message
    assert check_model("regression", {"r2": 0.4}, np.zeros(10), "test split").status == "passed"
    labels = np.array([0] * 90 + [1] * 10)
    majority = check_model("classification", {"accuracy": 0.9, "roc_auc": 0.7}, labels, "test split")
    assert majority.status == "warning" and "most common class" in majority.message and "0.900" in majority.message
    chance = check_model("classification", {"accuracy": 0.95, "roc_auc": 0.5}, labels, "test split")
    assert chance.status == "warning" and "no better than chance" in chance.message
    good = check_model("classification", {"accuracy": 0.95, "roc_auc": 0.9}, labels, "test split")
    assert good.status == "passed" and "ROC AUC 0.900" in good.message


def test_ensemble_selection_prefers_a_blend_when_it_scores_better() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    a = y + rng.normal(scale=1.0, size=500)
    b = y + rng.normal(scale=1.0, size=500)  # independent errors: the average halves the variance

    def neg_mse(truth: np.ndarray, pred: np.ndarray) -> float:
        return -float(np.mean((truth - pred) ** 2))

    weights, blended = select_ensemble([(0, a), (1, b)], y, neg_mse)
    assert set(weights) == {0, 1}
    assert blended > max(neg_mse(y, a), neg_mse(y, b)) + 0.2


# -- bad input ------------------------------------------------------------------------------------------


def test_bad_input_is_refused_clearly(workspace) -> None:  # type: ignore[no-untyped-def]
    frame = mixed_frame(200)
    automl = workspace.train.automl
    with pytest.raises(NotFound, match=r"No column 'churn'.*Did you mean 'churned'"):
        automl(frame, "churn", time_budget=5)
    with pytest.raises(ValidationFailed, match="single value"):
        automl(frame.assign(churned="no"), "churned", time_budget=5)
    with pytest.raises(ValidationFailed, match="empty"):
        automl(frame.head(0), "churned", time_budget=5)
    with pytest.raises(ValidationFailed, match="Every value"):
        automl(pd.DataFrame({"a": [None] * 30, "churned": [None] * 30}), "churned", time_budget=5)
    with pytest.raises(BadInput, match="needs a numeric target"):
        automl(frame, "churned", task="regression", time_budget=5)
    with pytest.raises(BadInput, match="continuous number"):
        automl(frame, "charges", task="classification", time_budget=5)
    for budget in (0, -3, float("nan")):
        with pytest.raises(BadInput, match="time budget must be a positive"):
            automl(frame, "churned", time_budget=budget)
    with pytest.raises(BadInput, match="Did you mean 'roc_auc'"):
        automl(frame, "churned", metric="roc-auc", time_budget=5)
    with pytest.raises(BadInput, match="Metric 'r2' does not fit the task classification"):
        automl(frame, "churned", metric="r2", time_budget=5)
    with pytest.raises(BadInput, match="Unknown learner 'lgbm'"):
        automl(frame, "churned", learners=["lgbm"], time_budget=5)


# -- real searches ---------------------------------------------------------------------------------------


def test_classification_search_respects_the_budget_and_tracks_everything(workspace) -> None:  # type: ignore[no-untyped-def]
    frame = mixed_frame()
    budget = 8.0
    started = time.monotonic()
    result = workspace.train.automl(frame, "churned", time_budget=budget, experiment="t-auto")
    wall = time.monotonic() - started
    assert within_budget(wall, budget), wall  # the whole call: worker start, checks, search, ensemble, evaluation
    assert result.seconds <= wall
    assert result.task == "classification" and result.metric == "roc_auc"
    assert result.score > 0.7, result.to_json()
    assert result.test_metrics["roc_auc"] > 0.65
    states = {t.state for t in result.trials}
    assert "complete" in states
    # Default configurations are tried learner by learner, unless the overrun prediction skips one that would not
    # fit what is left of the budget (a loaded machine): at least the first start point ran.
    assert result.trials and result.trials[0].learner

    runs = workspace.runs
    parent = runs.get(result.run_id)
    assert parent.status == "finished" and parent.params["metric"] == "roc_auc"
    assert parent.metrics["validation_roc_auc"] == pytest.approx(result.score)
    artifacts = {a.path for a in parent.artifacts}
    for name in ("guardrails.json", "leaderboard.json", "evaluation.json", "evaluation.html", "column_kinds.json"):
        assert name in artifacts
    for chart in ("confusion_matrix", "roc_curve", "pr_curve", "calibration"):
        assert f"charts/{chart}.json" in artifacts
    guardrails = orjson.loads(runs.artifact_bytes(result.run_id, "guardrails.json"))
    assert {g["check"] for g in guardrails} >= {"class_imbalance", "missing_values", "target_leakage", "useless_model"}
    children = runs.search(f"parent_run_id = '{result.run_id}'", max_results=500).runs
    assert len(children) == len(result.trials)
    complete = [t for t in result.trials if t.state == "complete"]
    child = runs.get(complete[0].run_id)
    assert child.params["learner"] == complete[0].learner and "roc_auc" in child.metrics
    assert len(runs.metric_history(child.id, "fold_roc_auc")) == 5  # one value per fold (pruning input)

    # The registered model takes raw rows (missing values, unseen levels) and answers in the original labels.
    from conveyor.train._automl import _register

    assert _register(workspace, result, "churn", "champion").model_ref == "churn:1"
    version = workspace.models.get("churn@champion")
    assert {c["name"] for c in version.signature["inputs"]} == {"plan", "city", "tenure", "charges", "notes", "signup"}
    model = workspace.models.load("churn:1")
    assert isinstance(model, AutoMLModel)
    raw = frame.drop(columns=["churned", "customer_id", "region"]).head(5).copy()
    raw.loc[0, "plan"] = "enterprise"
    predictions = model.predict(raw)
    assert set(predictions) <= {"yes", "no"}
    proba = model.predict_proba(raw)
    assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1)
    np.testing.assert_allclose(proba, result.model.predict_proba(raw))


def test_regression_search_logs_residual_charts(workspace) -> None:  # type: ignore[no-untyped-def]
    frame = load_diabetes(as_frame=True).frame
    result = workspace.train.automl(frame, "target", time_budget=6, metric="rmse", learners=["linear", "lightgbm"])
    assert result.task == "regression" and within_budget(result.seconds, 6)
    assert 40 < result.score < 70, result.score  # rmse of a sensible model on diabetes (std ≈ 77)
    # The search starts cheap: LightGBM's low-cost point, then each learner's defaults, then the sampler.
    first = [(t.learner, t.params.get("n_estimators")) for t in result.trials[:3]]
    assert first[:2] == [("lightgbm", LOW_COST["lightgbm"]["n_estimators"]), ("linear", None)], first
    # Then LightGBM's defaults, unless predicted not to fit what is left (a loaded machine): a cheaper trial instead.
    assert len(first) < 3 or first[2] in (("lightgbm", 100), ("linear", None)), first
    assert {t.learner for t in result.trials} <= {"linear", "lightgbm"}
    artifacts = {a.path for a in workspace.runs.get(result.run_id).artifacts}
    assert {"charts/residuals.json", "charts/predicted_vs_actual.json"} <= artifacts
    assert result.model.predict(frame.drop(columns=["target"]).head(3)).shape == (3,)


def test_on_one_holdout_every_trial_that_runs_completes_and_the_refit_uses_every_row(workspace) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(24_000, 6))
    y = (x[:, 0] + np.sin(2 * x[:, 1]) + 0.5 * x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=24_000) > 0).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)]).assign(label=y)
    # The search ends after six trials, well inside a budget that leaves room for the refit whatever the machine's
    # load (whether a refit fits a tight budget is the next tests' subject).
    result = workspace.train.automl(
        frame,
        "label",
        time_budget=60,
        max_trials=6,
        learners=["lightgbm", "xgboost"],
        test_size=0.0,
        experiment="t-hold",
    )
    assert result.validation.startswith("holdout: 10% of 24,000 rows")
    # With one validation fold there is nothing left to save after it: no trial is cut short by the pruner
    # (only killed at the deadline), so each one tells the sampler its score.
    assert {t.state for t in result.trials} <= {"complete", "stopped"}
    assert sum(t.state == "complete" for t in result.trials) >= 4
    assert result.refit == "done"
    assert all(p.named_steps["features"].rows_ == 24_000 for ps, _ in result.model.members for p in ps)


def test_a_trial_that_overruns_is_killed_within_the_budget(workspace) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40_000, 30))
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(30)]).assign(y=x[:, 0] + rng.normal(size=40_000))
    budget = 4.0
    started = time.monotonic()
    with pytest.raises(ValidationFailed, match="No trial finished within the time budget of 4 s"):
        # One 150-tree extra-trees fit on 36,000 rows takes far longer than 4 s: it must be stopped.
        workspace.train.automl(frame, "y", time_budget=budget, learners=["extra_trees"], experiment="t-kill")
    assert within_budget(time.monotonic() - started, budget)
    runs = workspace.runs.search("", experiments=["t-kill"], max_results=10).runs
    stopped = [r for r in runs if r.tags.get("state") == "stopped"]
    assert stopped and stopped[0].status == "killed"


def test_cli_trains_registers_and_prints_one_json_object(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "cli-ws")
    assert cli("--home", home, "init").code == 0
    source = tmp_path / "customers.csv"
    mixed_frame(800, seed=3).to_csv(source, index=False)
    assert cli("--home", home, "data", "ingest", str(source), "--name", "customers").code == 0

    result = cli(
        "--home",
        home,
        "train",
        "--data",
        "customers@latest",
        "--target",
        "churned",
        "--time-budget",
        "6",
        "--experiment",
        "cli-auto",
        "--register",
        "churners",
        "--alias",
        "champion",
        "--json",
    )
    assert result.code == 0, result.err
    body = result.json
    assert {"run_id", "metric", "score", "best_learner", "trials", "seconds", "model"} <= set(body)
    assert body["metric"] == "roc_auc" and body["model"] == "churners:1" and within_budget(body["seconds"], 6)
    assert body["trials"] >= 1 and 0.5 < body["score"] <= 1
    shown = cli("--home", home, "models", "show", "churners@champion", "--json")
    assert shown.code == 0 and shown.json["run_id"] == body["run_id"]

    human = cli(
        "--home", home, "train", "-d", "customers@latest", "-t", "churned", "--time-budget", "6", "--learner", "linear",
        "--no-ensemble",  # an ensemble of linear trials would print "best ensemble(linear 1.00)"
    )  # fmt: skip
    assert human.code == 0, human.err
    assert "Data guardrails" in human.out and "high_cardinality" in human.out and "best linear" in human.out

    missing = cli("--home", home, "train", "-d", "customers@latest", "-t", "churnd", "--json")
    assert missing.code == 2 and "Did you mean 'churned'" in missing.json["error"]["message"]
    zero = cli("--home", home, "train", "-d", "customers@latest", "-t", "churned", "--time-budget", "0")
    assert zero.code == 2 and "time budget must be a positive" in zero.err
    leak = cli("--home", home, "train", "-d", "customers@latest", "-t", "churned", "--allow-leak", "tenur", "--json")
    assert leak.code == 2 and "--allow-leak names no feature column: tenur" in leak.json["error"]["message"]


# -- forecasting -----------------------------------------------------------------------------------------


def daily_sales(days: int = 220, noise: float = 1.0, trend: float = 0.08) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    parts = []
    for s, base in enumerate((40.0, 70.0)):
        t = pd.date_range("2025-01-01", periods=days, freq="D")
        weekly = np.array([0, 3, 5, 4, 2, -6, -8])[t.day_of_week]
        y = base + trend * np.arange(days) + weekly + noise * rng.normal(size=days)
        parts.append(pd.DataFrame({"store": f"s{s}", "day": t.strftime("%Y-%m-%d"), "sales": y}))
    return pd.concat(parts, ignore_index=True)


def test_forecasting_beats_the_seasonal_naive_baseline_and_forecasts_from_raw_history(workspace) -> None:  # type: ignore[no-untyped-def]
    frame = daily_sales()
    result = workspace.train.automl(
        frame, "sales", task="forecasting", time_column="day", series_id="store", horizon=7, time_budget=8
    )
    assert result.task == "forecasting" and result.metric == "rmse" and within_budget(result.seconds, 8)
    assert result.validation.startswith("rolling-origin: 5 forecast origins")
    assert result.baseline is not None and result.baseline["season"] == 7
    assert result.baseline["beaten"] and result.score < result.baseline["score"]
    assert result.best_learner != "seasonal_naive"
    forecast = result.model.predict(frame)
    assert len(forecast) == 14 and set(forecast["store"]) == {"s0", "s1"}
    assert str(forecast["day"].min())[:10] == "2025-08-09"  # the day after the last one
    run = workspace.runs.get(result.run_id)
    assert run.params["task"] == "forecasting" and "baseline_rmse" in run.metrics


def test_forecasting_keeps_the_baseline_when_no_model_beats_it(workspace) -> None:  # type: ignore[no-untyped-def]
    frame = daily_sales(days=120, noise=0.0, trend=0.0)  # a pure weekly pattern: last week is a perfect forecast
    result = workspace.train.automl(
        frame,
        "sales",
        task="forecasting",
        time_column="day",
        series_id="store",
        horizon=7,
        time_budget=5,
        learners=["linear"],
    )
    assert result.best_learner == "seasonal_naive" and result.baseline is not None
    assert not result.baseline["beaten"] and result.score == pytest.approx(0, abs=1e-9)
    forecast = result.model.predict(frame[frame["store"] == "s0"])
    last_week = frame[frame["store"] == "s0"]["sales"].to_numpy()[-7:]
    np.testing.assert_allclose(forecast["forecast"].to_numpy(), last_week)


def test_forecasting_falls_back_to_the_baseline_when_no_trial_finishes(workspace) -> None:  # type: ignore[no-untyped-def]
    result = workspace.train.automl(
        daily_sales(), "sales", task="forecasting", time_column="day", series_id="store", horizon=7, time_budget=1
    )
    assert result.best_learner == "seasonal_naive" and result.seconds <= 1.5  # fixed costs dominate at 1 s
    assert result.baseline is not None and result.baseline["model_score"] is None and not result.baseline["beaten"]
    assert len(result.model.predict(daily_sales())) == 14


def test_forecasting_bad_input(workspace) -> None:  # type: ignore[no-untyped-def]
    frame = daily_sales(days=60)
    automl = workspace.train.automl
    with pytest.raises(BadInput, match="needs --time-column"):
        automl(frame, "sales", task="forecasting", horizon=7, time_budget=5)
    with pytest.raises(BadInput, match="needs --horizon"):
        automl(frame, "sales", task="forecasting", time_column="day", time_budget=5)
    with pytest.raises(NotFound, match="No series id column 'stores'.*Did you mean 'store'"):
        automl(frame, "sales", task="forecasting", time_column="day", series_id="stores", horizon=7, time_budget=5)
    with pytest.raises(ValidationFailed, match="more than once"):
        automl(frame, "sales", task="forecasting", time_column="day", horizon=7, time_budget=5)  # two stores
    with pytest.raises(BadInput, match="numeric target"):
        automl(frame, "store", task="forecasting", time_column="day", horizon=7, time_budget=5)
    with pytest.raises(BadInput, match="Did you mean 'forecasting'"):
        automl(frame, "sales", task="forecast", time_budget=5)


def test_rest_route_trains_and_refuses_bad_input(workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]

    source = tmp_path / "customers.csv"
    mixed_frame(500, seed=5).to_csv(source, index=False)
    workspace.data.ingest(source, name="customers")
    client = api_client(workspace)
    body = {
        "data": "customers@latest",
        "target": "churned",
        "time_budget": 6,
        "learners": ["linear"],
        "register": "api-churn",
    }
    response = client.post("/api/v1/train", json=body)
    assert response.status_code == 201, response.text
    result = response.json()
    # The best linear trial, or a blend of linear trials (two values of C can blend better than either).
    assert result["best_learner"] in ("linear", "ensemble(linear 1.00)")
    assert within_budget(result["seconds"], 6) and result["model"] == "api-churn:1"
    assert workspace.runs.get(result["run_id"]).params["learners"] == "linear"
    missing = client.post("/api/v1/train", json={**body, "target": "churnd"})
    assert missing.status_code == 404 and "Did you mean 'churned'" in missing.json()["error"]["message"]
    assert client.post("/api/v1/train", json={**body, "time_budget": 0}).status_code == 422
    one_class = client.post("/api/v1/train", json={**body, "target": "region"})
    assert one_class.status_code == 422 and "single value" in one_class.json()["error"]["message"]


# -- refit and the run's model ---------------------------------------------------------------------------


def test_the_refit_ships_one_pipeline_per_member_and_the_run_keeps_its_model(workspace, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    frame = mixed_frame(600, seed=4)
    budget = 15.0
    started = time.monotonic()
    result = workspace.train.automl(
        frame, "churned", time_budget=budget, learners=["linear"], max_trials=2, experiment="t-refit"
    )
    assert within_budget(time.monotonic() - started, budget)
    assert result.refit == "done" and result.to_json()["refit"] == "done"
    run = workspace.runs.get(result.run_id)
    assert run.tags["refit"] == "done" and run.metrics["refit_seconds"] > 0
    # One featuriser + learner per member, fitted on every training row (600 rows less the 10% test split).
    assert [len(pipelines) for pipelines, _ in result.model.members] == [1] * len(result.model.members)
    pipeline = result.model.members[0][0][0]
    assert pipeline.named_steps["features"].rows_ == 540

    # The run logged the model: it is registered later, from the CLI and from the SDK.
    assert "model/conveyor-model.json" in {a.path for a in run.artifacts}
    home = str(tmp_path / "ws")
    registered = cli("--home", home, "models", "register", "--run", result.run_id, "--name", "churn", "--json")
    assert registered.code == 0, registered.err
    assert registered.json["ref"] == "churn:1" and registered.json["run_id"] == result.run_id
    again = workspace.models.register_from_run(result.run_id, "churn")
    assert again.version == 2 and again.metrics["validation_roc_auc"] == pytest.approx(result.score)
    raw = frame.drop(columns=["churned"]).head(7)
    for ref in ("churn:1", "churn:2"):
        np.testing.assert_allclose(workspace.models.load(ref).predict_proba(raw), result.model.predict_proba(raw))
    assert {c["name"] for c in again.signature["inputs"]} >= {"plan", "city", "tenure", "charges", "notes"}


def test_a_refit_that_would_overrun_keeps_the_fold_models_and_says_why(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from conveyor.train import _automl

    # Estimates ten thousand times the measured fits: no refit can fit in the budget (the search reserves what
    # it can and stops after the first trial).
    monkeypatch.setattr(_automl, "_REFIT_MARGIN", 1e4)
    budget = 6.0
    started = time.monotonic()
    result = workspace.train.automl(mixed_frame(400, seed=2), "churned", time_budget=budget, learners=["linear"])
    assert within_budget(time.monotonic() - started, budget)
    assert result.refit.startswith("skipped (would overrun by "), result.refit
    assert workspace.runs.get(result.run_id).tags["refit"] == result.refit
    assert [len(pipelines) for pipelines, _ in result.model.members] == [5]  # the fold models of the one member
    version = workspace.models.register_from_run(result.run_id, "fallback")
    assert workspace.models.load(version.ref).predict(mixed_frame(5, seed=9)).shape == (5,)


def test_refit_refuses_work_that_cannot_finish_by_the_deadline() -> None:
    from conveyor.train._automl import _refit, _WorkerPool

    pool = _WorkerPool()  # not started: nothing may be started for a refit that cannot finish
    fitted, note, seconds = _refit(pool, [{"learner": "linear", "params": {"C": 1.0}}], [30.0], time.monotonic() + 5)
    assert fitted is None and seconds == 0.0
    assert note.startswith("skipped (would overrun by 2") and pool.process is None


@pytest.mark.parametrize(
    ("rows", "columns", "budget", "expected"),
    [
        (500, 10, 30, "3x 5-fold cross-validation"),  # tiny data: the folds repeated with other shuffles
        (1_500, 10, 30, "5-fold cross-validation"),  # small data: every row validates once
        (500, 10, 5, "5-fold cross-validation"),  # the same tiny data for a 5 s budget: one pass
        (15_000, 10, 30, "holdout: 10%"),  # 167k cells for a 30 s budget (FLAML's rule: 83k): dozens of trials
        (15_000, 10, 3600, "5-fold cross-validation"),  # the same data with an hour affords the folds
        (25_000, 2, 3600, "holdout: 10%"),  # 20,000 rows and more: always one holdout
    ],
)
def test_validation_is_cross_validation_only_while_the_data_is_small_for_the_budget(
    rows: int, columns: int, budget: float, expected: str
) -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(rows, columns)))
    y = rng.normal(size=rows)
    split, validation = _folds(x, y, "regression", 5, 0, budget)
    assert validation.startswith(expected), validation
    assert len(split) == (1 if expected.startswith("holdout") else 15 if expected.startswith("3x") else 5)


def test_repeated_folds_validate_every_row_once_per_repeat_on_other_partitions() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(89, 13)))  # the size of one half of the wine data
    y = np.repeat([0, 1, 2], [30, 35, 24])
    split, validation = _folds(x, y, "classification", 5, 0, 30)
    assert validation == "3x 5-fold cross-validation (stratified) on 89 rows"
    assert len(split) == 15
    validated = np.concatenate([v for _, v in split])
    assert (np.bincount(validated, minlength=89) == 3).all()  # each row once per repeat
    for train, val in split:
        assert not set(train) & set(val)
        assert np.bincount(y[val], minlength=3).min() >= 4  # stratified: every class in every fold
    partitions = [{frozenset(map(int, v)) for _, v in split[r * 5 : r * 5 + 5]} for r in range(3)]
    assert partitions[0] != partitions[1] and partitions[1] != partitions[2]  # other shuffles, not copies


def test_a_configuration_predicted_to_overrun_is_known_from_its_learners_earlier_trials() -> None:
    from conveyor.train._automl import TrialRecord, _predicted_seconds

    forest = {"n_estimators": 16, "max_features": 0.33, "min_samples_leaf": 1, "max_depth": 40}
    records = [
        TrialRecord(0, "extra_trees", forest, "complete", -1.0, seconds=1.0),
        TrialRecord(1, "linear", {"alpha": 1.0, "l1_ratio": 0.0}, "complete", -1.0, seconds=0.05),
        TrialRecord(2, "extra_trees", forest, "failed", None, seconds=0.01),  # says nothing of the cost
    ]
    big = {"learner": "extra_trees", "params": {**forest, "n_estimators": 400, "max_features": 1.0}}
    predicted = _predicted_seconds(records, big, folds=5)
    assert predicted == pytest.approx(400 / 16 / 0.33)  # 25x the trees over 3x the columns: 76 s
    assert _predicted_seconds(records, {"learner": "xgboost", "params": {}}, folds=5) is None  # not tried yet
    # A trial pruned after 2 of 5 folds ran 40% of a whole one; the cheapest rate per unit of size is used.
    pruned = TrialRecord(3, "extra_trees", forest, "pruned", None, fold_scores=[-1.0, -1.1], seconds=0.2)
    assert _predicted_seconds([*records, pruned], big, folds=5) == pytest.approx(0.5 * 400 / 16 / 0.33)


def _trial(y: np.ndarray, oof: np.ndarray, learner: str, fit_seconds: float = 0.5) -> dict[str, Any]:
    spec = resolve_metric("rmse", "regression")
    return {"score": score(spec, y, oof), "learner": learner, "oof": oof, "fit_seconds": fit_seconds, "models": []}


def test_the_ensemble_draws_on_each_learners_best_rather_than_near_copies_of_the_best() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=600)
    shared = rng.normal(size=600)  # the linear trials' errors: near-copies of one another
    kept = {n: _trial(y, y + shared + rng.normal(scale=0.02, size=600), "linear") for n in range(6)}
    kept[7] = _trial(y, y + 1.1 * rng.normal(size=600), "lightgbm", fit_seconds=2.0)  # worse alone, other errors
    _prune(kept)
    assert 7 in kept and len(kept) == 6  # the five best, and the lightgbm trial as its learner's best
    best = max(kept, key=lambda n: kept[n]["score"])
    candidates = _candidates(kept)
    assert candidates[0] == best and 7 in candidates and len(candidates) == 4  # the best 3 and lightgbm's best

    spec = resolve_metric("rmse", "regression")
    choice, blended = _choose(kept, spec, y, use_ensemble=True)
    assert 7 in choice and best in choice  # the blend of the two kinds of error scores better than either
    assert len(choice) <= 3  # the members the refit affords
    assert blended is not None and blended > kept[best]["score"] + 0.1
    assert _choose(kept, spec, y, use_ensemble=False) == ({best: 1.0}, None)
    # The search reserves the refit of exactly what would ship now, and of nothing else.
    expected = sum(_refit_estimate(kept[n], 1.25) for n in choice) + _REFIT_SLACK + _log_estimate(len(choice))
    assert _refit_reserve(kept, choice, 1.25) == pytest.approx(expected)
    assert _refit_reserve(kept, {best: 1.0}, 1.25) < expected  # the lightgbm member's fit costs the most


def test_the_search_starts_from_low_cost_points_and_lets_expensive_learners_in_last() -> None:
    points = initial_points(LEARNERS, "classification")
    learners = [p["learner"] for p in points]
    cheap_boosting = [name for name in LEARNERS if name in LOW_COST and name not in EXPENSIVE]
    assert learners[: len(cheap_boosting)] == cheap_boosting  # the low-cost points come first
    defaults_end = len(cheap_boosting) + len(LEARNERS) - len(EXPENSIVE)
    assert learners[defaults_end : defaults_end + len(EXPENSIVE)] == list(EXPENSIVE)  # forests after the defaults
    forests = [p for p in points if p["learner"] in EXPENSIVE]
    assert all(p[f"{p['learner']}.n_estimators"] == 16 for p in forests)  # the fewest trees of their space
    assert all(p[f"{p['learner']}.max_features"] < 0.5 for p in forests)  # over a third of the columns
    grown = points[defaults_end + len(EXPENSIVE) :]  # last, each boosting learner's more-and-smaller-steps point
    assert [p["learner"] for p in grown] == [name for name in LEARNERS if name in GROWN]
    for p in grown:
        rate = f"{p['learner']}.learning_rate"
        default = next(
            d for d in points if d["learner"] == p["learner"] and d == default_params(p["learner"], "classification")
        )
        assert p[rate] < default[rate]
    assert len(points) == len(LEARNERS) + len(cheap_boosting) + len(GROWN)
    for point in points:  # every point lies inside its learner's search space (Optuna would refuse it)
        space = {f"{point['learner']}.{p.name}": p for p in SPACES[point["learner"]]}
        for key, value in point.items():
            if key != "learner":
                assert space[key].low <= value <= space[key].high, (key, value)
