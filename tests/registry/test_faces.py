"""``conveyor models ...`` and ``/api/v1/models``: the registry through its CLI and REST faces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor import Workspace
from tests.api_client import api_client


@pytest.fixture
def logged(tmp_path: Path, churn, conveyor_pipeline):  # type: ignore[no-untyped-def]
    """A workspace folder with one finished run that logged a model, and one failed run."""
    x, _ = churn
    home = tmp_path / "ws"
    ws = Workspace.open(home)
    with ws.runs.start("churn") as run:
        ws.models.log_model(run.id, conveyor_pipeline, input_example=x)
    with pytest.raises(RuntimeError), ws.runs.start("churn") as failed:
        raise RuntimeError("boom")
    ws.close()
    return str(home), run.id, failed.id


def test_register_alias_tag_and_export_from_the_command_line(cli, logged, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home, run_id, _ = logged
    registered = cli(
        "--home", home, "models", "register", "--run", run_id, "--name", "churn", "--tag", "team=growth", "--json"
    )
    assert registered.code == 0, registered.err
    body = registered.json
    assert (body["ref"], body["format"], body["tags"]) == ("churn:1", "skops", {"team": "growth"})
    alias = cli("--home", home, "models", "alias", "churn", "champion", "1", "--json")
    assert alias.json == {"name": "churn", "alias": "champion", "version": 1, "workspace": home}
    tagged = cli("--home", home, "models", "tag", "churn@champion", "stage=prod", "--json").json
    assert tagged["tags"] == {"team": "growth", "stage": "prod"}
    assert cli("--home", home, "models", "untag", "churn:1", "team", "--json").json["tags"] == {"stage": "prod"}
    shown = cli("--home", home, "models", "show", "churn@champion")
    assert "format skops" in shown.out and "stage=prod" in shown.out

    out = tmp_path / "export"
    exported = cli("--home", home, "models", "export", "churn:1", str(out), "--format", "onnx", "--json").json
    assert exported["files"] == ["conveyor-onnx.json", "model.onnx"] and exported["max_abs_diff"] <= 1e-5
    assert json.loads((out / "conveyor-onnx.json").read_text())["model"] == "churn:1"
    refused = cli("--home", home, "models", "export", "churn:1", str(out), "--json")
    assert refused.code == 2 and refused.json["error"]["code"] == "conflict"
    assert cli("--home", home, "models", "export", "churn:1", str(out), "--force").code == 0
    assert (out / "MLmodel").exists()

    assert cli("--home", home, "models", "unalias", "churn", "champion", "--json").json["deleted"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["models", "register", "--run", "{failed}", "--name", "churn"], "failed; register models only from runs"),
        (["models", "register", "--run", "nope", "--name", "churn"], "No run with id 'nope'"),
        (["models", "register", "--run", "{run}", "--name", "churn", "--artifact", "x"], "logged no model under 'x'"),
        (["models", "alias", "chrun", "champion", "1"], "Did you mean 'churn'"),
        (["models", "alias", "churn", "champion", "7"], "has no version 7"),
        (["models", "alias", "churn", "latest", "1"], "'latest' always means"),
        (["models", "tag", "churn:1", "novalue"], "must be KEY=VALUE"),
        (["models", "export", "churn:1", "{tmp}/x", "--format", "pmml"], "Unknown export format 'pmml'"),
    ],
)
def test_bad_input_exits_2_with_the_reason(cli, logged, tmp_path: Path, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    home, run_id, failed_id = logged
    assert cli("--home", home, "models", "register", "--run", run_id, "--name", "churn").code == 0
    filled = [a.format(run=run_id, failed=failed_id, tmp=tmp_path) for a in args]
    result = cli("--home", home, *filled)
    assert result.code == 2, result.out + result.err
    assert message in result.err
    assert cli("--home", home, "models", "list", "--json").json["models"][0]["versions"] == 1, "nothing half-made"


def test_the_rest_api_registers_aliases_and_tags(logged) -> None:  # type: ignore[no-untyped-def]
    home, run_id, failed_id = logged
    ws = Workspace.open(home)
    client = api_client(ws)
    created = client.post("/api/v1/models/churn/versions", json={"run_id": run_id, "tags": {"team": "growth"}})
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    refused = client.post("/api/v1/models/churn/versions", json={"run_id": failed_id})
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "conflict")
    assert client.put("/api/v1/models/churn/aliases/champion", json={"version": 1}).json()["aliases"] == ["champion"]
    assert client.put("/api/v1/models/churn/aliases/champion", json={"version": 4}).status_code == 404
    assert client.put("/api/v1/models/churn/aliases/latest", json={"version": 1}).status_code == 400
    tagged = client.patch("/api/v1/models/churn@champion/tags", json={"tags": {"stage": "prod"}}).json()
    assert tagged["tags"] == {"team": "growth", "stage": "prod"}
    assert client.delete("/api/v1/models/churn:1/tags/team").json()["tags"] == {"stage": "prod"}
    assert [v["version"] for v in client.get("/api/v1/models/churn/versions").json()] == [1]
    assert client.delete("/api/v1/models/churn/aliases/champion").status_code == 204
    assert client.get("/api/v1/models/churn@champion").status_code == 404
    ws.close()
