"""`conveyor runs ...` and `/api/v1/runs/...`: thin faces over ws.runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor import Workspace
from tests.api_client import api_client


@pytest.fixture
def home(tmp_path: Path) -> str:
    path = tmp_path / "ws"
    with Workspace.open(path) as ws:
        for i, learner in enumerate(["lgbm", "rf", "lgbm"]):
            with ws.runs.start("churn", name=f"t{i}") as run:
                run.log_params({"learner": learner})
                for step in range(3):
                    run.log_metric("loss", 1.0 / (step + 1 + i), step=step)
                run.log_metric("auc", 0.7 + i / 10)
    return str(path)


def test_cli_search_compare_history_experiments(cli, home: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", home, "runs", "search", "params.learner = 'lgbm'", "-o", "metrics.auc desc", "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert [r["name"] for r in body["runs"]] == ["t2", "t0"] and body["next_page_token"] is None
    ids = [r["id"] for r in body["runs"]]

    page = json.loads(cli("--home", home, "runs", "search", "", "-n", "2", "--json").out)
    assert len(page["runs"]) == 2 and page["next_page_token"]
    rest = json.loads(
        cli("--home", home, "runs", "search", "", "-n", "2", "--page-token", page["next_page_token"], "--json").out
    )
    assert [r["name"] for r in rest["runs"]] == ["t0"]

    human = cli("--home", home, "runs", "search", "metrics.auc > 0.75", "-o", "metrics.auc desc")
    assert human.code == 0 and "t2" in human.out and "t1" in human.out and "t0" not in human.out

    chart = tmp_path / "cmp.html"
    compared = json.loads(cli("--home", home, "runs", "compare", *ids, "--html", str(chart), "--json").out)
    assert compared["differing_metrics"] == ["auc", "loss"] and compared["differing_params"] == []
    page_html = chart.read_text()
    assert "Comparing 2 runs" in page_html and "loss by step" in page_html and "parcoords" in page_html

    hist = json.loads(cli("--home", home, "runs", "history", ids[0], "loss", "--json").out)
    assert [p["step"] for p in hist["history"]] == [0, 1, 2]
    exps = json.loads(cli("--home", home, "runs", "experiments", "--json").out)
    assert [(e["name"], e["runs"]) for e in exps["experiments"]] == [("churn", 3)]

    listed = json.loads(cli("--home", home, "runs", "list", "-e", "churn", "--json").out)
    assert [r["name"] for r in listed["runs"]] == ["t2", "t1", "t0"]
    # Top-level runs by default, each with its number of child runs; --all lists the children with their parent.
    with Workspace.open(home) as ws, ws.runs.start("churn", name="search") as parent:
        for i in range(3):
            with parent.child(f"trial-{i}"):
                pass
    top = json.loads(cli("--home", home, "runs", "list", "--json").out)["runs"]
    assert [(r["name"], r["children"]) for r in top] == [("search", 3), ("t2", 0), ("t1", 0), ("t0", 0)]
    every = json.loads(cli("--home", home, "runs", "list", "--all", "--json").out)["runs"]
    assert [r["name"] for r in every][:4] == ["trial-2", "trial-1", "trial-0", "search"]
    assert every[0]["parent_run_id"] == top[0]["id"]
    table = cli("--home", home, "runs", "list", "--all")
    assert "parent" in table.out and "children" in table.out and "experiment" in table.out
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal: names fold, statuses are never cut
    narrow = cli("--home", home, "runs", "list", "--all")
    assert narrow.out.count("finished") == 7 and "finis…" not in narrow.out
    assert max(len(line) for line in narrow.out.splitlines()) <= 80


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runs", "search", "metrics.auc >> 1"], "Cannot read the filter"),
        (["runs", "search", "", "-o", "metrics.auc sideways"], "is not asc or desc"),
        (["runs", "search", "", "-e", "chrun"], "Did you mean 'churn'"),
        (["runs", "compare", "only-one"], "at least two"),
        (["runs", "history", "nope", "loss"], "No run with id 'nope'"),
    ],
)
def test_cli_bad_input_is_exit_2_with_one_json_error(cli, home: str, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", home, *args, "--json")
    assert result.code == 2, (result.out, result.err)
    assert message in json.loads(result.out)["error"]["message"]


def test_rest_search_compare_and_errors(home: str) -> None:
    with Workspace.open(home) as ws:
        client = api_client(ws)
        body = client.get(
            "/api/v1/runs/search",
            params={"filter": "metrics.auc > 0.75", "order_by": "metrics.auc desc", "max_results": 1},
        ).json()
        assert [r["name"] for r in body["runs"]] == ["t2"] and body["next_page_token"]
        second = client.get(
            "/api/v1/runs/search",
            params={
                "filter": "metrics.auc > 0.75",
                "order_by": "metrics.auc desc",
                "max_results": 1,
                "page_token": body["next_page_token"],
            },
        ).json()
        assert [r["name"] for r in second["runs"]] == ["t1"] and second["next_page_token"] is None
        ids = [body["runs"][0]["id"], second["runs"][0]["id"]]
        compared = client.get("/api/v1/runs/compare", params={"run_id": ids}).json()
        assert compared["differing_params"] == ["learner"]
        assert "<html" in client.get("/api/v1/runs/compare.html", params={"run_id": ids}).text
        assert client.get("/api/v1/runs/experiments").json()[0]["runs"] == 3
        bad = client.get("/api/v1/runs/search", params={"filter": "metrics.auc > 'x'"})
        assert bad.status_code == 400 and "is a number" in bad.json()["error"]["message"]
        assert client.get("/api/v1/runs/compare", params={"run_id": [ids[0], "nope"]}).status_code == 404


def test_cli_lists_prints_downloads_and_opens_artifacts(cli, home: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Workspace.open(home) as ws, ws.runs.start("churn", name="reported") as run:
        run.log_bytes("evaluation.html", b"<html><body>report</body></html>")
        run.log_bytes("charts/roc.json", b'{"x": [0, 1]}\n')
        run.log_bytes("model/model.bin", b"\x00\x01binary")
    listed = json.loads(cli("--home", home, "runs", "artifacts", run.id, "--json").out)
    assert [a["path"] for a in listed["artifacts"]] == ["charts/roc.json", "evaluation.html", "model/model.bin"]
    printed = cli("--home", home, "runs", "artifacts", run.id, "charts/roc.json")
    assert printed.code == 0 and printed.out == '{"x": [0, 1]}\n'
    binary = cli("--home", home, "runs", "artifacts", run.id, "model/model.bin")
    assert binary.code == 2 and "--download" in binary.err
    typo = cli("--home", home, "runs", "artifacts", run.id, "charts/roc.jsn", "--json")
    assert typo.code == 2 and "Did you mean 'charts/roc.json'" in json.loads(typo.out)["error"]["message"]
    out = tmp_path / "out"
    cli("--home", home, "runs", "artifacts", run.id, "--download", str(out))
    assert (out / "charts" / "roc.json").read_bytes() == b'{"x": [0, 1]}\n'
    assert (out / "model" / "model.bin").read_bytes() == b"\x00\x01binary" and not list(out.rglob("*.part"))
    opened = json.loads(cli("--home", home, "runs", "open", run.id, "--no-browser", "--json").out)
    assert opened["path"] == "evaluation.html" and Path(opened["file"]).read_bytes().endswith(b"report</body></html>")
    with Workspace.open(home) as ws, ws.runs.start("churn", name="bare") as bare:
        pass
    none = cli("--home", home, "runs", "open", bare.id, "--no-browser")
    assert none.code == 2 and "no HTML report" in none.err
