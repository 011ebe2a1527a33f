"""The walking skeleton end to end, as a user runs it: ``conveyor quickstart`` in a fresh process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conveyor import Workspace
from tests.conftest import http_ok, wait_until

KEYS = {"workspace", "data", "run_id", "model", "endpoint", "predictions", "seconds"}


def run_quickstart(home: Path, env: dict[str, str] | None = None, *extra: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-m", "conveyor", "--home", str(home), "quickstart", "--no-serve", "--json", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, f"stdout must be one JSON object: {completed.stdout!r}"
    result: dict[str, object] = json.loads(lines[0])
    return result


def check_lifecycle(result: dict[str, object], home: Path, ws: Workspace) -> None:
    assert set(result) >= KEYS
    assert result["workspace"] == str(home)
    assert result["data"] == "churn:1"
    assert result["model"] == "churn:1"
    assert str(result["endpoint"]).startswith("http://127.0.0.1:") and str(result["endpoint"]).endswith("/predict")
    predictions = result["predictions"]
    assert isinstance(predictions, list) and len(predictions) == 5
    assert all(isinstance(p, bool) for p in predictions)

    version = ws.data.get("churn:1")
    assert version.rows == 20_000
    run = ws.runs.get(str(result["run_id"]))
    assert run.status == "finished"
    assert run.inputs == ["churn-quickstart.prepare:1"]
    pipeline_run = ws.pipelines.get_run(str(result["pipeline_run"]))
    assert [s.name for s in pipeline_run.steps] == ["ingest_churn", "prepare", "train", "evaluate", "register"]
    assert pipeline_run.status == "succeeded"
    assert run.metrics["test_roc_auc"] > 0.72 and run.tags["kind"] == "automl"
    assert {"evaluation.json", "column_kinds.json"} <= {a.path for a in run.artifacts}
    model = ws.models.get("churn@champion")
    assert model.run_id == run.id
    assert "tenure_months" in [c["name"] for c in model.signature["inputs"]]
    # How the model scores is on the version (ONNX learners, or native and why: a slow store may leave no time
    # in the 10 s budget to convert).
    assert model.tags["inference"] == run.tags["inference"]
    assert model.tags["inference"].startswith(("onnx (", "native (")), model.tags["inference"]
    # The registered model's reference profile: its inputs and predictions on the data the run read.
    profile = ws.monitors.reference("churn@champion")
    assert profile.source == "churn-quickstart.prepare:1" and {"signup_date", "prediction"} <= set(profile.sketches)
    endpoint = ws.endpoints.get("churn")
    assert endpoint.status == "stopped", "--no-serve stops the endpoint"
    assert [(d.name, d.model, d.traffic) for d in endpoint.deployments] == [("blue", model.ref, 100)]
    assert set(result["routes"]) >= {"predict", "invocations", "v2_infer", "metrics"}
    with pytest.raises(httpx.HTTPError):
        httpx.post(str(result["endpoint"]), json=[], timeout=2)
    # The lineage runs unbroken from the ingested data version to the deployment.
    downstream = ws.lineage.edges("data_version", version.id)
    reached = {(e.relation, e.to_kind) for e in downstream}
    assert {
        ("read_by", "step_run"),
        ("read_by", "run"),
        ("produced", "model_version"),
        ("served_by", "deployment"),
    } <= reached


@pytest.mark.slow
def test_quickstart_on_the_embedded_default(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "ws"
    result = run_quickstart(home)
    with Workspace.open(home) as ws:
        check_lifecycle(result, home, ws)
    again = run_quickstart(home)
    assert again["data"] == "churn:1", "unchanged data makes no new version"
    assert again["model"] == "churn:1", "every pipeline step is answered from the cache"
    assert [s["summary"].endswith("(cached)") for s in again["stages"][:5]] == [True] * 5
    assert again["predictions"] == result["predictions"], "same seed, same model, same scores"
    # Every README example runs as printed on the quickstart's workspace (tests/test_docs.py lists them).
    import shlex

    from tests.test_docs import readme_commands

    for command in readme_commands():
        ran = cli("--home", str(home), *shlex.split(command)[1:])
        assert ran.code == 0, f"README example failed: {command}\n{ran.err or ran.out}"
        assert "No runs match" not in ran.out and "No models" not in ran.out, f"README example found nothing: {command}"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.s3
def test_quickstart_scaled_out_on_postgres_and_s3(
    tmp_path: Path, postgres_url: str, s3_bucket: tuple[str, dict[str, str]]
) -> None:
    """The scale-out set-up in one run: metadata in PostgreSQL, artifacts in an S3 bucket, nothing in the folder."""
    url, options = s3_bucket
    home = tmp_path / "ws"
    env = {
        "CONVEYOR_DB_URL": postgres_url,
        "CONVEYOR_ARTIFACTS_URL": url,
        "CONVEYOR_ARTIFACTS_OPTIONS": json.dumps(options),
    }
    result = run_quickstart(home, env)
    os.environ.update(env)
    try:
        with Workspace.open(home) as ws:
            assert ws.store.dialect == "postgresql"
            assert not ws.artifacts.is_local
            check_lifecycle(result, home, ws)
            model = ws.models.get("churn:1")
            assert ws.artifacts.fs.exists(ws.artifacts._path(model.digest))
    finally:
        for key in env:
            os.environ.pop(key)
    assert not (home / "conveyor.db").exists() and not (home / "artifacts").exists()


@pytest.mark.slow
def test_quickstart_serves_until_interrupted(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "--home",
            str(home),
            "quickstart",
            "--json",
            "--port",
            "0",
            "--rows",
            "3000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        result = json.loads(process.stdout.readline())
        api = str(result["api"])
        wait_until(lambda: http_ok(f"{api}/api/v1/health"), timeout=30, what="the quickstart's API")
        # the first quickstart on a workspace adds the OS user as admin and hands out their token, once
        token = str(result["api_token"])
        assert httpx.get(f"{api}/api/v1/models/churn@champion").status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{api}/api/v1/models/churn@champion", headers=auth).json()["version"] == 1
        endpoints = httpx.get(f"{api}/api/v1/endpoints/churn", headers=auth).json()
        assert endpoints["status"] == "running" and endpoints["traffic"] == {"blue": 100}
        record = {
            "signup_date": "2024-10-01", "tenure_months": 3, "plan": "basic", "contract": "month-to-month",
            "payment_method": "invoice", "region": "south", "monthly_charges": 24.5, "total_charges": 73.5,
            "support_calls_90d": 4, "avg_session_minutes": 5.0, "days_since_last_login": 30, "devices": 1,
            "has_autopay": False, "satisfaction_score": 2,
        }  # fmt: skip
        assert httpx.post(str(result["endpoint"]), json=[record], timeout=10).status_code == 401, "keys by default"
        with Workspace.open(home) as ws:
            key = ws.endpoints.keys("churn")["primary"]
        scored = httpx.post(
            str(result["endpoint"]), json=[record], headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        assert scored.status_code == 200 and len(scored.json()["predictions"]) == 1
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    with Workspace.open(home) as ws:
        assert ws.endpoints.get("churn").status == "stopped"


@pytest.mark.long
def test_quickstart_loop_closes_the_loop_by_itself(tmp_path: Path) -> None:
    """``--loop``: normal traffic passes, drifted traffic alerts, the retrained challenger beats the champion on
    held-out requests, its canary is healthy and it is promoted; the JSON says so and the workspace agrees."""
    home = tmp_path / "ws"
    result = run_quickstart(home, None, "--loop")
    loop = result["loop"]
    assert isinstance(loop, dict)
    assert loop["stage"] == "promoted", loop["timeline"]
    assert (loop["champion_before"], loop["champion_after"], loop["challenger"]) == ("churn:1", "churn:2", "churn:2")
    assert loop["traffic"] == {"churn-v2": 100}
    assert "performance" in loop["alert"]["signals"] and loop["retraining_run"]
    steps = [s["step"] for s in loop["timeline"]]
    assert steps[:3] == ["live", "normal", "drift"] and steps[-1] == "promoted"
    assert 0 < loop["alert_to_promotion_seconds"] < loop["seconds"]
    with Workspace.open(home) as ws:
        assert ws.models.get("churn@champion").version == 2
        history = ws.monitors.history("churn-live-watch")
        assert [r.status for r in history] == ["alert", "ok"]  # the normal period was quiet
        assert ws.endpoints.get("churn-live").status == "stopped"  # --no-serve stops both endpoints
        graph = ws.lineage.show("monitor:churn-live-watch", direction="down", depth=6)
        assert {"alert", "pipeline_run", "model_version", "deployment"} <= {n.kind for n in graph.nodes}


def test_the_quickstart_leaves_an_endpoint_or_model_named_churn_that_it_did_not_make_alone(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from conveyor.errors import Conflict
    from conveyor.quickstart import run_quickstart

    with Workspace.open(tmp_path / "endpoint") as ws:
        ws.endpoints.create("churn", description="ours, extended by hand")
        with pytest.raises(Conflict, match="exists that the quickstart did not make"):
            run_quickstart(ws)
        assert ws.pipelines.runs() == []  # refused before anything ran
    with Workspace.open(tmp_path / "model") as ws:
        model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
        ws.models.register("churn", model)
        with pytest.raises(Conflict, match=r"versions the quickstart did not make \(churn:1\)"):
            run_quickstart(ws)
        assert ws.models.get("churn:1").aliases == []
