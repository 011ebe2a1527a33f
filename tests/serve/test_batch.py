"""Batch scoring: correctness against the model's own predict, chunks, the error threshold, resuming after a
SIGKILL, the Dask executor, and refusals of bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from conveyor.errors import NotFound, ValidationFailed
from conveyor.serve._batch import ScoringFailed
from tests.api_client import api_client
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


class SlowDoubler(BaseEstimator):  # type: ignore[misc]
    """A regressor that doubles column ``a`` and takes ``delay`` seconds per call (to interrupt a job)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    def fit(self, x: Any, y: Any = None) -> SlowDoubler:
        return self

    def predict(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
        time.sleep(self.delay)
        return np.asarray(x["a"].to_numpy() * 2.0)


def _numeric(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
    frame["id"] = np.arange(rows)
    return frame


def _commit(ws: Any, frame: pd.DataFrame, name: str, parts: int = 1) -> Any:
    """Commit ``frame`` as one version made of ``parts`` Parquet parts (an append chain)."""
    version = None
    for i, piece in enumerate(np.array_split(np.arange(len(frame)), parts)):
        table = pa.Table.from_pandas(frame.iloc[piece].reset_index(drop=True), preserve_index=False)
        version, _ = ws.data.commit_table(table, name=name, source={"kind": "test"}, mode="append" if i else "new")
    return version


@pytest.fixture
def logistic(workspace: Any) -> tuple[Any, LogisticRegression]:
    frame = _numeric(2000)
    model = LogisticRegression().fit(frame[["a", "b", "c"]], (frame.a + frame.b > 0).astype(int))
    ws = workspace
    ws.models.register("lr", model, input_example=frame[["a", "b", "c"]].head(20))
    ws.models.set_alias("lr", "champion", 1)
    return ws, model


def test_scores_like_predict_over_several_chunks_with_lineage(workspace: Any, churn_training: Any) -> None:
    result, signature, _ = churn_training
    ws = workspace
    version = ws.models.register("churn", result.model, signature=signature)
    ws.models.set_alias("churn", "champion", version.version)
    from conveyor.quickstart import TARGET, make_churn_frame

    frame = make_churn_frame(900, seed=11).drop(columns=[TARGET])
    frame["signup_date"] = pd.to_datetime(frame["signup_date"]).dt.date
    source = _commit(ws, frame, "churn_new", parts=3)
    assert len(source.files) == 3

    scored = ws.batch.score(
        "churn@champion", "churn_new@latest", output="churn_scored", chunk_rows=200, executor="local:2"
    )

    # three parts of 300 rows: each a chunk of 200 rows and one of 100
    assert (scored.output, scored.rows, scored.chunks, scored.failed_rows) == ("churn_scored:1", 900, 6, 0)
    out = ws.data.to_pandas(scored.output)
    assert list(out.columns) == [*frame.columns, "prediction", "probability", "error"]
    features = ws.data.to_pandas(source)[[c["name"] for c in signature["inputs"]]]
    np.testing.assert_array_equal(out["prediction"].to_numpy(), result.model.predict(features))
    np.testing.assert_allclose(out["probability"].to_numpy(), result.model.predict_proba(features)[:, 1], atol=1e-12)
    assert out["error"].isna().all()
    assert out["customer_id"].tolist() == frame["customer_id"].tolist()  # order kept across chunks
    upstream = {
        (e.from_kind, e.from_id, e.relation)
        for e in ws.lineage.edges("data_version", scored.output_id, direction="upstream")
    }
    assert ("model_version", version.id, "scored") in upstream
    assert ("data_version", source.id, "derived") in upstream
    assert not ws.batch.job_path("churn@champion", "churn_new@latest", output="churn_scored", chunk_rows=200).exists()


def test_multiclass_gets_a_probability_column_per_class(workspace: Any) -> None:
    frame = _numeric(600, seed=2)
    labels = np.where(frame.a > 0.5, "high", np.where(frame.a < -0.5, "low", "mid"))
    model = LogisticRegression().fit(frame[["a", "b"]], labels)
    workspace.models.register("tri", model)
    _commit(workspace, frame, "points")

    scored = workspace.batch.score("tri", "points", output="tri_scored", chunk_rows=250, executor="local:1")

    out = workspace.data.to_pandas(scored.output)
    assert [c for c in out.columns if c.startswith("probability")] == [f"probability_{c}" for c in model.classes_]
    np.testing.assert_array_equal(out["prediction"].to_numpy(), model.predict(frame[["a", "b"]]))
    np.testing.assert_allclose(
        out[[f"probability_{c}" for c in model.classes_]].to_numpy(), model.predict_proba(frame[["a", "b"]])
    )


def test_failed_rows_below_the_threshold_get_a_null_prediction_and_a_reason(logistic: Any) -> None:
    ws, model = logistic
    frame = _numeric(1000, seed=1)
    frame.loc[[5, 500, 999], "b"] = np.nan  # LogisticRegression refuses NaN
    _commit(ws, frame, "with_nan")

    scored = ws.batch.score("lr@champion", "with_nan", output="nan_scored", chunk_rows=400, error_threshold=0.01)

    assert scored.failed_rows == 3
    assert any("NaN" in e for e in scored.errors)
    out = ws.data.to_pandas(scored.output)
    bad = out["error"].notna()
    assert out.index[bad].tolist() == [5, 500, 999]
    assert out.loc[bad, "prediction"].isna().all() and out.loc[bad, "probability"].isna().all()
    good = frame.drop(index=[5, 500, 999])
    np.testing.assert_array_equal(out.loc[~bad, "prediction"].to_numpy(), model.predict(good[["a", "b", "c"]]))


def test_failed_rows_above_the_threshold_fail_the_job_and_write_nothing(logistic: Any) -> None:
    ws, _ = logistic
    frame = _numeric(1000, seed=1)
    frame.loc[[5, 500, 999], "b"] = np.nan
    _commit(ws, frame, "with_nan")

    with pytest.raises(ScoringFailed, match=r"3 of 1,000 rows \(0\.30%\) could not be scored.*--error-threshold"):
        ws.batch.score("lr@champion", "with_nan", output="nan_scored", chunk_rows=400, error_threshold=0.002)
    with pytest.raises(NotFound):
        ws.data.get("nan_scored")


def test_a_killed_job_resumes_and_skips_finished_chunks(workspace: Any, tmp_path: Path) -> None:
    ws = workspace
    ws.models.register("slow", SlowDoubler(delay=0.2))
    frame = _numeric(24)
    _commit(ws, frame, "few")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONVEYOR_HOME": str(ws.settings.home)}
    command = [sys.executable, "-m", "conveyor", "batch", "score", "--model", "slow", "--data", "few"]
    command += ["--output", "doubled", "--chunk-rows", "2", "--executor", "local:1", "--json"]
    job = ws.batch.job_path("slow", "few", output="doubled", chunk_rows=2)
    process = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: len(list(job.glob("chunk-*.json"))) >= 3, timeout=60, what="three finished chunks")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    finished = len(list(job.glob("chunk-*.json")))
    assert 3 <= finished < 12
    with pytest.raises(NotFound):
        ws.data.get("doubled")

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert rerun.returncode == 0, rerun.stderr
    payload = json.loads(rerun.stdout)
    assert payload["skipped_chunks"] >= finished and payload["chunks"] == 12
    assert "already scored; skipping them" in rerun.stderr
    out = ws.data.to_pandas("doubled")
    assert out["id"].tolist() == list(range(24))
    np.testing.assert_allclose(out["prediction"].to_numpy(), frame["a"].to_numpy() * 2)
    assert not job.exists()


def test_dask_local_executor(logistic: Any) -> None:
    ws, model = logistic
    frame = _numeric(1500, seed=4)
    _commit(ws, frame, "points")

    scored = ws.batch.score("lr:1", "points:1", output="dask_scored", executor="dask-local", chunk_rows=500)

    assert (scored.executor, scored.chunks) == ("dask-local", 3)
    out = ws.data.to_pandas(scored.output)
    np.testing.assert_array_equal(out["prediction"].to_numpy(), model.predict(frame[["a", "b", "c"]]))


def test_unknown_model_and_data_are_refused_with_suggestions(logistic: Any) -> None:
    ws, _ = logistic
    _commit(ws, _numeric(10), "points")
    with pytest.raises(NotFound, match="Did you mean 'lr'"):
        ws.batch.score("lrr@champion", "points", output="x")
    with pytest.raises(NotFound, match="Did you mean 'points'"):
        ws.batch.score("lr@champion", "pionts", output="x")


def test_a_column_missing_from_the_data_is_named(logistic: Any, cli: Any) -> None:
    ws, _ = logistic
    _commit(ws, _numeric(10).drop(columns=["c"]), "no_c")
    with pytest.raises(ValidationFailed, match="has no column 'c', which model lr:1 takes"):
        ws.batch.score("lr@champion", "no_c", output="x")

    result = cli(
        "--home", str(ws.settings.home), "batch", "score", "-m", "lr@champion", "-d", "no_c", "-o", "x", "--json"
    )

    assert result.code == 2
    assert result.json["error"]["code"] == "validation_failed"
    assert "'c'" in result.json["error"]["message"]


def test_an_output_column_already_in_the_data_is_refused(logistic: Any) -> None:
    ws, _ = logistic
    frame = _numeric(10)
    frame["prediction"] = 1.0
    _commit(ws, frame, "has_prediction")
    with pytest.raises(ValidationFailed, match="already has a column 'prediction'"):
        ws.batch.score("lr@champion", "has_prediction", output="x")


def test_rest_route_scores_and_maps_errors(logistic: Any) -> None:

    ws, _ = logistic
    frame = _numeric(300, seed=5)
    _commit(ws, frame, "points")
    client = api_client(ws)

    ok = client.post(
        "/api/v1/batch/score", json={"model": "lr", "data": "points", "output": "api_scored", "executor": "local:1"}
    )
    missing = client.post("/api/v1/batch/score", json={"model": "nope", "data": "points", "output": "y"})

    assert ok.status_code == 200, ok.text
    assert ok.json()["output"] == "api_scored:1" and ok.json()["rows"] == 300
    assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
    # a caller from elsewhere cannot point the server at a Dask scheduler of their choosing (it sends pickles)
    for executor in ("dask://127.0.0.1:1", "dask-local", "local:100000"):
        refused = client.post(
            "/api/v1/batch/score", json={"model": "lr", "data": "points", "output": "z", "executor": executor}
        )
        assert refused.status_code in (400, 403), (executor, refused.text)
