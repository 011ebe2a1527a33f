"""Lineage as a query: one reference grammar, walks up and down with a bounded depth, nodes labelled in bulk,
and the same answer from the SDK, the CLI (tree, --json, --dot) and the REST API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

from conveyor import Workspace
from conveyor.errors import BadInput, InvalidReference, NotFound
from conveyor.governance import LineageGraph, parse_lineage_ref

ROOT = Path(__file__).resolve().parents[2]


def _frame(n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    return frame.assign(y=(frame.a + frame.b > 0).astype(int))


@pytest.fixture
def story(workspace: Workspace) -> Iterator[dict[str, Any]]:
    """churn:1, appended into churn:2; a run reads churn:2 and its model is registered as churn:1 @champion."""
    ws = workspace
    frame = _frame()
    first, _ = ws.data.commit_table(pa.Table.from_pandas(frame.iloc[:40]), name="churn", source={"kind": "test"})
    second, _ = ws.data.commit_table(
        pa.Table.from_pandas(frame.iloc[40:]), name="churn", source={"kind": "test"}, mode="append"
    )
    with ws.runs.start("churn-exp", name="brave-fox") as run:
        run.log_input(second)
    model = LogisticRegression().fit(frame[["a", "b"]], frame.y)
    version = ws.models.register("churn", model, run_id=run.id)
    ws.models.set_alias("churn", "champion", version.version)
    yield {"ws": ws, "first": first, "second": second, "run": run, "model": version}


def _summary(graph: LineageGraph) -> set[tuple[str, str, str]]:
    labels = {n.key: f"{n.kind}:{n.label}" for n in graph.nodes}
    return {(labels[e.source], e.relation, labels[e.target]) for e in graph.edges}


def test_walk_up_from_a_model_alias(story: dict[str, Any]) -> None:
    graph = story["ws"].lineage.show("model:churn@champion", direction="up")
    assert graph.root.label == "churn:1 @champion" and graph.root.ref == "model:churn:1"
    assert graph.direction == "up" and graph.depth == 10 and not graph.truncated
    assert _summary(graph) == {
        ("run:churn-exp/brave-fox", "produced", "model_version:churn:1 @champion"),
        ("data_version:churn:2", "read_by", "run:churn-exp/brave-fox"),
        ("data_version:churn:1", "derived", "data_version:churn:2"),
    }
    run = next(n for n in graph.nodes if n.kind == "run")
    assert (run.ref, run.side, run.distance, run.exists) == (f"run:{story['run'].id}", "upstream", 1, True)
    assert [n.distance for n in graph.nodes] == [0, 1, 2, 3]


def test_walk_down_from_a_data_version_and_the_depth_bound(story: dict[str, Any]) -> None:
    ws = story["ws"]
    down = ws.lineage.show("churn:1", direction="down")  # a bare NAME:N is a data version
    assert _summary(down) == {
        ("data_version:churn:1", "derived", "data_version:churn:2"),
        ("data_version:churn:2", "read_by", "run:churn-exp/brave-fox"),
        ("run:churn-exp/brave-fox", "produced", "model_version:churn:1 @champion"),
    }
    near = ws.lineage.show("data:churn:1", direction="down", depth=1)
    assert _summary(near) == {("data_version:churn:1", "derived", "data_version:churn:2")}
    assert near.truncated
    both = ws.lineage.show(f"run:{story['run'].id}")
    assert {n.side for n in both.nodes} == {"root", "upstream", "downstream"}
    assert {n.label for n in both.nodes if n.side == "downstream"} == {"churn:1 @champion"}
    assert {n.label for n in both.nodes if n.side == "upstream"} == {"churn:1", "churn:2"}
    assert ws.lineage.show("data:churn@latest").root.id == story["second"].id


@pytest.mark.parametrize(
    ("ref", "kind", "message"),
    [
        ("data:chrun:1", NotFound, "No data asset named 'chrun'. Did you mean 'churn'?"),
        ("model:chrun@champion", NotFound, "No model named 'chrun'. Did you mean 'churn'?"),
        ("model:churn@champoin", NotFound, "Model 'churn' has no alias 'champoin'. Did you mean 'champion'?"),
        ("model:churn:7", NotFound, "Model 'churn' has no version 7; its versions are 1 to 1."),
        ("churn:9", NotFound, "Data asset 'churn' has no version 9; its versions are 1 to 2."),
        ("run:01J0000000000000000000000X", NotFound, "No run with id '01J0000000000000000000000X'"),
        ("endpoint:churn", NotFound, "No endpoint named 'churn'"),
        ("modle:churn:1", InvalidReference, "unknown kind 'modle'. Did you mean 'model'?"),
        ("step_run:01J0", InvalidReference, "Did you mean 'step-run'?"),
        ("deployment:churn", InvalidReference, "deployment:ENDPOINT/NAME"),
        ("run:../etc", InvalidReference, "is not an id"),
    ],
)
def test_unknown_and_malformed_references(story: dict[str, Any], ref: str, kind: type, message: str) -> None:
    with pytest.raises(kind) as caught:
        story["ws"].lineage.show(ref)
    assert message in str(caught.value)


def test_direction_and_depth_are_checked(story: dict[str, Any]) -> None:
    ws = story["ws"]
    for depth in (0, 51, -1):
        with pytest.raises(BadInput, match=f"Depth {depth} is out of range: give a whole number of links from 1 to 50"):
            ws.lineage.show("churn:1", depth=depth)
    with pytest.raises(BadInput, match="Direction 'upp' is not one of up, down, both. Did you mean 'up'?"):
        ws.lineage.show("churn:1", direction="upp")
    assert ws.lineage.show("churn:1", depth=50).depth == 50


def test_the_reference_grammar() -> None:
    assert str(parse_lineage_ref("churn")) == "data:churn"
    assert str(parse_lineage_ref("churn:latest")) == "data:churn@latest"
    assert str(parse_lineage_ref("model:churn")) == "model:churn"
    assert parse_lineage_ref("deployment:churn/blue").deployment == "blue"
    assert parse_lineage_ref("pipeline-run:01J9Z3").id == "01J9Z3"
    with pytest.raises(InvalidReference, match="say which run"):
        parse_lineage_ref("run:")


def test_nodes_are_labelled_in_bulk(workspace: Workspace) -> None:
    """The number of queries does not grow with the number of nodes."""
    ws = workspace
    version, _ = ws.data.commit_table(pa.table({"x": [1]}), name="wide", source={})
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    def queries_for(runs: int) -> int:
        for _ in range(runs):
            with ws.runs.start("wide") as run:
                run.log_input(version)
        statements.clear()
        sa.event.listen(ws.store.engine, "before_cursor_execute", count)
        try:
            graph = ws.lineage.show("wide:1", direction="down")
        finally:
            sa.event.remove(ws.store.engine, "before_cursor_execute", count)
        assert sum(n.kind == "run" for n in graph.nodes) == len(graph.nodes) - 1
        return len(statements)

    few = queries_for(3)
    many = queries_for(40)
    assert few == many, (few, many)


def test_pipeline_runs_and_their_steps(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))
    ws = workspace
    ws.data.commit_table(pa.table({"x": [1, 2, 3]}), name="nums", source={})
    run = ws.pipelines.run("tests.pipelines.steps:from_data")
    assert run.status == "succeeded", run.error
    graph = ws.lineage.show(f"pipeline-run:{run.id}")
    assert graph.root.label == "from-data (succeeded)"
    summary = _summary(graph)
    assert ("pipeline_run:from-data (succeeded)", "ran", "step_run:from-data.filter_big") in summary
    assert ("data_version:nums:1", "read_by", "step_run:from-data.filter_big") in summary
    assert ("step_run:from-data.filter_big", "produced", "data_version:from-data.filter_big:1") in summary
    up = ws.lineage.show("data:from-data.filter_big:1", direction="up")
    assert _summary(up) == {
        ("step_run:from-data.filter_big", "produced", "data_version:from-data.filter_big:1"),
        ("pipeline_run:from-data (succeeded)", "ran", "step_run:from-data.filter_big"),
        ("data_version:nums:1", "read_by", "step_run:from-data.filter_big"),
        ("data_version:nums:1", "derived", "data_version:from-data.filter_big:1"),
    }
    step = next(n for n in up.nodes if n.kind == "step_run")
    assert ws.lineage.show(str(step.ref), direction="up", depth=1).root.key == step.key


def test_endpoints_and_deleted_deployments(story: dict[str, Any]) -> None:
    from conveyor.registry import infer_signature

    ws = story["ws"]
    frame = _frame()
    model = LogisticRegression().fit(frame[["a", "b"]], frame.y)
    ws.models.register("served", model, signature=infer_signature(frame[["a", "b"]], model.predict(frame[["a", "b"]])))
    try:
        ws.endpoints.deploy("scoring", "served:1", deployment="blue")
        graph = ws.lineage.show("endpoint:scoring", direction="up")
        assert _summary(graph) == {
            ("endpoint:scoring", "has", "deployment:scoring/blue"),
            ("model_version:served:1", "served_by", "deployment:scoring/blue"),
        }
        assert [n.side for n in graph.nodes[:2]] == ["root", "root"]
        assert ws.lineage.show("deployment:scoring/blue").root.label == "scoring/blue"
        with pytest.raises(NotFound, match="Endpoint 'scoring' has no deployment 'bleu'. Did you mean 'blue'?"):
            ws.lineage.show("deployment:scoring/bleu")
    finally:
        ws.endpoints.delete("scoring")
    after = ws.lineage.show("model:served:1", direction="down")
    gone = next(n for n in after.nodes if n.kind == "deployment")
    assert not gone.exists and gone.ref is None and gone.label.endswith("(deleted)")


def test_dot_output(story: dict[str, Any]) -> None:
    dot = story["ws"].lineage.show("model:churn:1").to_dot()
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}")
    model_key = f"model_version:{story['model'].id}"
    assert f'"{model_key}" [label="model\\nchurn:1 @champion", shape=component, penwidth=2.5];' in dot
    assert f'"run:{story["run"].id}" -> "{model_key}" [label="produced"];' in dot


# -- the faces ----------------------------------------------------------------------------------------------


def test_cli_tree_json_and_dot(cli, story: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    home = str(story["ws"].settings.home)
    tree = cli("--home", home, "lineage", "show", "model:churn@champion")
    assert tree.code == 0, tree.err
    assert "model churn:1 @champion" in tree.out and "came from" in tree.out and "led to" in tree.out
    assert "produced run churn-exp/brave-fox" in tree.out and "read_by data churn:2" in tree.out
    as_json = cli("--home", home, "lineage", "show", "churn:2", "--down", "--json").json
    assert set(as_json) >= {"root", "nodes", "edges"}
    assert as_json["root"]["ref"] == "data:churn:2" and as_json["direction"] == "down"
    assert {e["relation"] for e in as_json["edges"]} == {"read_by", "produced"}
    dot = cli("--home", home, "lineage", "show", "churn:2", "--dot")
    assert dot.code == 0 and dot.out.startswith("digraph lineage {")
    shallow = cli("--home", home, "lineage", "show", "churn:1", "--down", "--depth", "1")
    assert "raise --depth" in shallow.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data:chrun:1"], "Did you mean 'churn'?"),
        (["modle:churn:1"], "Did you mean 'model'?"),
        (["churn:1", "--depth", "51"], "from 1 to 50"),
        (["churn:1", "--up", "--down"], "not both"),
        (["churn:1", "--json", "--dot"], "--json or --dot"),
    ],
)
def test_cli_errors_exit_2(cli, story: dict[str, Any], args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", str(story["ws"].settings.home), "lineage", "show", *args)
    assert result.code == 2 and message in result.err, (result.code, result.err)


def test_rest(story: dict[str, Any]) -> None:
    from tests.api_client import api_client

    client = api_client(story["ws"], "reader")
    ok = client.get("/api/v1/lineage", params={"ref": "model:churn@champion", "direction": "up", "depth": 2})
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["root"]["label"] == "churn:1 @champion" and body["depth"] == 2 and body["truncated"] is True
    assert {(e["relation"]) for e in body["edges"]} == {"produced", "read_by"}
    unknown = client.get("/api/v1/lineage", params={"ref": "model:chrun:1"})
    assert unknown.status_code == 404 and "Did you mean 'churn'?" in unknown.json()["error"]["message"]
    for depth in (0, 51):
        bounded = client.get("/api/v1/lineage", params={"ref": "churn:1", "depth": depth})
        assert bounded.status_code == 400 and "from 1 to 50" in bounded.json()["error"]["message"]
    sideways = client.get("/api/v1/lineage", params={"ref": "churn:1", "direction": "sideways"})
    assert sideways.status_code == 400
    malformed = client.get("/api/v1/lineage", params={"ref": "modle:churn:1"})
    assert malformed.status_code == 400 and "Did you mean 'model'?" in malformed.json()["error"]["message"]
