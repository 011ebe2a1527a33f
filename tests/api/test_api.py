"""The REST API: thin routes over the services, errors as JSON with the kind's status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api_client import api_client
from tests.conftest import http_ok, wait_until


@pytest.fixture
def client(workspace):  # type: ignore[no-untyped-def]
    return api_client(workspace)


def test_health_is_public_and_the_workspace_is_not(client, workspace) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    anonymous = TestClient(client.app, base_url="http://127.0.0.1")
    body = anonymous.get("/api/v1/health").json()
    assert body["status"] == "ok" and set(body) == {"status", "version"}, "health names no path or URL"
    assert anonymous.get("/api/v1/workspace").status_code == 401
    described = client.get("/api/v1/workspace").json()["workspace"]
    assert described["home"] == str(workspace.settings.home)
    assert described["db_backend"] == "sqlite"


def test_resources_are_served_from_the_services(client, workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    workspace.data.ingest(tmp_path / "a.csv", name="a")
    with workspace.runs.start("exp") as run:
        run.log_metric("auc", 0.75, step=1)
    assert [a["name"] for a in client.get("/api/v1/data").json()] == ["a"]
    version = client.get("/api/v1/data/a:1").json()
    assert version["rows"] == 1 and version["name"] == "a"
    assert [v["version"] for v in client.get("/api/v1/data/a/versions").json()] == [1]
    runs = client.get("/api/v1/runs", params={"experiment": "exp"}).json()
    assert [r["id"] for r in runs] == [run.id]
    assert client.get(f"/api/v1/runs/{run.id}").json()["metrics"] == {"auc": 0.75}
    assert client.get(f"/api/v1/runs/{run.id}/metrics/auc").json()[0]["step"] == 1
    assert client.get("/api/v1/models").json() == []
    assert client.get("/api/v1/endpoints").json() == []


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/v1/data/nope", 404, "not_found"),
        ("/api/v1/data/a:zero", 400, "invalid_reference"),
        ("/api/v1/models/m@champion", 404, "not_found"),
        ("/api/v1/runs/unknown", 404, "not_found"),
        ("/api/v1/endpoints/e", 404, "not_found"),
        ("/api/v1/runs?limit=0", 422, None),
    ],
)
def test_errors_are_json_with_the_right_status(client, path: str, status: int, code: str | None) -> None:  # type: ignore[no-untyped-def]
    response = client.get(path)
    assert response.status_code == status
    if code is not None:
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]


def test_openapi_and_docs(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    assert {"/api/v1/health", "/api/v1/data", "/api/v1/runs/{run_id}", "/api/v1/models/{ref}"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


@pytest.mark.slow
def test_conveyor_server_binds_loopback_and_stops_on_sigint(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "conveyor", "init", str(tmp_path / "ws")], check=True, capture_output=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "--home", str(tmp_path / "ws"), "server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "Conveyor API for" in first, first
        url = first.rsplit(" on ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        wait_until(lambda: http_ok(f"{url}/api/v1/health"), timeout=30, what="the API to answer")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    assert process.returncode == 0


def test_endpoint_routes_create_show_keys_and_refuse_bad_traffic(client, workspace) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/api/v1/endpoints", json={"name": "churn", "idle_timeout": 30})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "created" and created.json()["settings"]["idle_timeout"] == 30
    keys = client.get("/api/v1/endpoints/churn/keys").json()
    assert set(keys) == {"primary", "secondary"} and keys["primary"] != keys["secondary"]
    rotated = client.post("/api/v1/endpoints/churn/keys/primary").json()
    assert rotated["primary"] != keys["primary"] and rotated["secondary"] == keys["secondary"]
    assert client.post("/api/v1/endpoints/churn/keys/tertiary").status_code == 422
    again = client.post("/api/v1/endpoints", json={"name": "churn"})
    assert again.status_code == 409 and "exists" in again.json()["error"]["message"]
    open_bind = client.post("/api/v1/endpoints", json={"name": "open", "auth": "none", "host": "0.0.0.0"})
    assert open_bind.status_code == 422 and "loopback" in open_bind.json()["error"]["message"]
    traffic = client.put("/api/v1/endpoints/churn/traffic", json={"shares": {"blue": 100}})
    assert traffic.status_code == 422 and "no deployment 'blue'" in traffic.json()["error"]["message"]
    unknown_model = client.post("/api/v1/endpoints/churn/deployments", json={"model": "nope@champion"})
    assert unknown_model.status_code == 404
    assert client.get("/api/v1/endpoints/churn/logs").json() == []
    assert client.delete("/api/v1/endpoints/churn").status_code == 204
    assert client.get("/api/v1/endpoints/churn").status_code == 404
