"""Issue 10's probes, one test each, against the real app with real tokens: what an attacker who can reach the
port (or a web page the user visits) tried, and what they get now."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from conveyor.api import create_app
from conveyor.workspace import Workspace
from tests.api_client import api_client

YAML = {"Content-Type": "application/yaml"}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace.open(tmp_path / "ws")
    workspace.data.commit_table(pa.table({"x": [1]}), name="facts", source={"kind": "test"})
    yield workspace
    workspace.close()


def test_no_route_answers_without_credentials(ws: Workspace) -> None:
    anonymous = TestClient(create_app(ws), base_url="http://127.0.0.1")
    assert anonymous.get("/api/v1/endpoints/churn/keys").status_code == 401
    assert anonymous.get("/api/v1/data").status_code == 401
    assert anonymous.get("/api/v1/health").status_code == 200


def test_endpoint_keys_need_an_operator_or_admin(ws: Workspace) -> None:
    for role in ("reader", "data-scientist"):
        response = api_client(ws, role).get("/api/v1/endpoints/churn/keys")
        assert response.status_code == 403, role


def test_a_pipeline_step_naming_os_system_is_refused_and_nothing_runs(ws: Workspace, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    spec = f"name: pwn\nsteps:\n  - name: s\n    function: os:system\n    inputs:\n      command: touch {marker}\n"
    client = api_client(ws, "admin")
    response = client.put("/api/v1/pipelines", content=spec, headers=YAML)
    assert response.status_code == 403, response.text
    assert "os:system" in response.json()["error"]["message"]
    assert client.post("/api/v1/pipelines/pwn/runs").status_code == 404
    assert not marker.exists()


def test_datastores_on_the_servers_files_and_path_escapes(ws: Workspace, tmp_path: Path) -> None:
    scientist = api_client(ws, "data-scientist")
    root = scientist.post("/api/v1/datastores", json={"name": "root", "url": "/"})
    assert root.status_code == 403
    own_db = f"sqlite:///{ws.settings.home / 'conveyor.db'}"
    assert scientist.post("/api/v1/datastores", json={"name": "meta", "url": own_db}).status_code == 403
    folder = tmp_path / "shared"
    folder.mkdir()
    assert (
        api_client(ws, "admin").post("/api/v1/datastores", json={"name": "shared", "url": str(folder)}).status_code
        == 201
    )
    escape = scientist.post("/api/v1/data/grp/ingest", json={"store": "shared", "path": "../../../etc/group"})
    assert escape.status_code == 400
    absolute = scientist.post("/api/v1/data/os/ingest", json={"store": "shared", "path": "/etc/os-release"})
    assert absolute.status_code == 400
    assert scientist.get("/api/v1/data/grp/rows").status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "select * from read_csv('/etc/passwd')",
        "select * from read_text('/etc/shadow')",
        "select * from glob('/root/*')",
        "select * from read_blob('/etc/hostname')",
        "install httpfs",
    ],
)
def test_sql_reads_only_the_workspace_assets(ws: Workspace, query: str) -> None:
    client = api_client(ws, "data-scientist")
    response = client.post("/api/v1/data/sql", json={"query": query})
    assert response.status_code == 400, response.text
    saved = client.post("/api/v1/data/sql", json={"query": query, "save_as": "loot"})
    assert saved.status_code == 400
    assert client.get("/api/v1/data/loot").status_code == 404


def test_dns_rebinding_and_cross_site_posts(ws: Workspace) -> None:
    client = api_client(ws, "admin")
    assert client.get("/api/v1/endpoints", headers={"Host": "attacker.example"}).status_code == 400
    assert client.post("/api/v1/endpoints/churn/stop", headers={"Origin": "http://evil.example"}).status_code == 403
    no_auth = TestClient(create_app(ws, auth="none"), base_url="http://127.0.0.1")
    assert (
        no_auth.post("/api/v1/endpoints/churn/keys/primary", headers={"Origin": "http://evil.example"}).status_code
        == 403
    )


def test_select_without_an_asset_answers(ws: Workspace) -> None:
    response = api_client(ws, "reader").post("/api/v1/data/sql", json={"query": "select 1 as x"})
    assert response.status_code == 200 and response.json()["rows"] == [{"x": 1}]


def test_schemathesis_findings(ws: Workspace) -> None:
    client = api_client(ws, "admin")
    huge = client.put("/api/v1/models/m/aliases/champion", json={"version": 2**63})
    assert huge.status_code in (400, 404, 422), huge.text
    traffic = client.put("/api/v1/endpoints/nothing/traffic", json={"shares": {}})
    assert traffic.status_code in (400, 404, 422), traffic.text
