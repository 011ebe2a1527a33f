"""The pipeline routes: definitions from YAML, runs started in the background, the trigger API, schedules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]

SPEC = """\
name: nums-yaml
description: Numbers, summed
params:
  n: 3
steps:
  - name: make
    function: tests.pipelines.steps:make_numbers
    inputs:
      n: param:n
  - name: total
    function: tests.pipelines.steps:total
    inputs:
      frame: step:make
"""
YAML = {"content-type": "application/yaml"}


@pytest.fixture
def workspace(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A workspace whose conveyor.toml trusts the test steps (specs sent over the API may use only those)."""
    from conveyor import Workspace

    home = tmp_path / "ws"
    home.mkdir()
    (home / "conveyor.toml").write_text('[pipelines]\ntrusted_modules = ["tests.pipelines.steps"]\n')
    ws = Workspace.open(home)
    yield ws
    ws.close()


@pytest.fixture
def client(workspace, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # runs start as processes that import the test steps
    from tests.api_client import api_client

    return api_client(workspace, "admin")


def _apply(client: TestClient) -> dict[str, Any]:
    response = client.put("/api/v1/pipelines", content=SPEC, headers=YAML)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_pipelines_are_applied_from_yaml_and_read_back(client: TestClient) -> None:
    applied = _apply(client)
    assert applied["name"] == "nums-yaml" and applied["kind"] == "yaml"
    assert applied["definition"]["spec"]["params"] == {"n": 3}
    assert [p["name"] for p in client.get("/api/v1/pipelines").json()] == ["nums-yaml"]
    assert client.get("/api/v1/pipelines/nums-yaml").json()["description"] == "Numbers, summed"
    missing = client.get("/api/v1/pipelines/nums-yml")
    assert missing.status_code == 404 and "Did you mean 'nums-yaml'" in missing.json()["error"]["message"]
    typo = client.put("/api/v1/pipelines", content=SPEC.replace("function:", "functon:", 1), headers=YAML)
    assert typo.status_code == 422
    assert "line 7: unknown key 'functon'" in typo.json()["error"]["message"]
    wrong_type = client.put("/api/v1/pipelines", content=SPEC, headers={"content-type": "application/json"})
    assert wrong_type.status_code == 400 and "application/yaml" in wrong_type.json()["error"]["message"]


def _finished(client: TestClient, run_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = client.get(f"/api/v1/pipeline-runs/{run_id}").json()
    return body if body["status"] != "running" else None


def test_runs_and_the_trigger_api_start_runs_in_the_background(client: TestClient) -> None:
    _apply(client)
    reason = {"kind": "alert", "alert": "churn-drift", "metric": "psi", "value": 0.31}
    triggered = client.post("/api/v1/pipelines/nums-yaml/trigger", json={"reason": reason, "params": {"n": 4}})
    started = client.post("/api/v1/pipelines/nums-yaml/runs", json={"params": {"n": 2}})
    assert triggered.status_code == 202 and started.status_code == 202, (triggered.text, started.text)
    alert_id, api_id = triggered.json()["run_id"], started.json()["run_id"]
    assert triggered.json()["url"].endswith(f"/api/v1/pipeline-runs/{alert_id}")

    alert_run = wait_until(lambda: _finished(client, alert_id), timeout=90, what="the triggered run")
    api_run = wait_until(lambda: _finished(client, api_id), timeout=90, what="the started run")
    assert alert_run["status"] == "succeeded" and api_run["status"] == "succeeded"
    assert {k: v for k, v in alert_run["trigger"].items() if k != "trigger_id"} == reason
    assert api_run["trigger"]["kind"] == "api"
    totals = {r["id"]: r["steps"][-1]["outputs"]["value"] for r in (alert_run, api_run)}
    assert totals == {alert_id: 0 + 1 + 2 + 3, api_id: 0 + 1}

    listed = client.get("/api/v1/pipelines/nums-yaml/runs").json()
    assert sorted(r["id"] for r in listed) == sorted([alert_id, api_id])
    logs = client.get(f"/api/v1/pipeline-runs/{alert_id}/steps/make/logs").json()
    assert "making 4 numbers" in logs["logs"]
    assert client.get(f"/api/v1/pipeline-runs/{alert_id}/steps/nope/logs").status_code == 404
    assert client.get("/api/v1/pipeline-runs/unknown").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/v1/pipelines/nums-yaml/trigger", {"reason": {"alert": "x"}}, 400, "needs a 'kind'"),
        ("/api/v1/pipelines/nums-yaml/trigger", {"reason": {"kind": "alert"}, "params": {"m": 1}}, 422, "'m'"),
        ("/api/v1/pipelines/nope/trigger", {"reason": {"kind": "alert"}}, 404, "No registered pipeline"),
        ("/api/v1/pipelines/nope/runs", None, 404, "No registered pipeline"),
    ],
)
def test_bad_triggers_start_nothing(
    client: TestClient, workspace, path: str, body: Any, status: int, message: str
) -> None:  # type: ignore[no-untyped-def]
    _apply(client)
    response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    assert workspace.pipelines.runs() == []


def test_schedules_are_added_listed_and_removed(client: TestClient, workspace) -> None:  # type: ignore[no-untyped-def]
    _apply(client)
    made = client.post("/api/v1/pipelines/nums-yaml/schedules", json={"cron": "0 9 * * *", "timezone": "Europe/Paris"})
    assert made.status_code == 201, made.text
    schedule = made.json()
    assert schedule["kind"] == "cron" and schedule["next_at"] is not None
    bad = client.post("/api/v1/pipelines/nums-yaml/schedules", json={"cron": "0 9 * *"})
    assert bad.status_code == 400 and "is not a cron expression" in bad.json()["error"]["message"]
    no_asset = client.post("/api/v1/pipelines/nums-yaml/schedules", json={"on_data": "churn"})
    assert no_asset.status_code == 404
    assert [s["id"] for s in client.get("/api/v1/schedules").json()] == [schedule["id"]]
    assert [s["id"] for s in client.get("/api/v1/pipelines/nums-yaml/schedules").json()] == [schedule["id"]]
    assert client.delete(f"/api/v1/pipelines/nums-yaml/schedules/{schedule['id']}").status_code == 204
    assert client.delete(f"/api/v1/pipelines/nums-yaml/schedules/{schedule['id']}").status_code == 404
    client.post("/api/v1/pipelines/nums-yaml/schedules", json={"cron": "@hourly", "params": {"n": 5}})
    assert client.delete("/api/v1/pipelines/nums-yaml/schedules").status_code == 204
    assert workspace.pipelines.schedules() == []
