"""Tracked runs: parameters, metrics by step, tags, artifacts, inputs, status."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import BadInput, Conflict, NotFound


def test_a_run_records_everything_it_is_given(any_workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ws = any_workspace
    (tmp_path / "d.csv").write_text("x\n1\n")
    version = ws.data.ingest(tmp_path / "d.csv", name="d").version
    report = tmp_path / "report.txt"
    report.write_text("all good")
    with ws.runs.start("exp", name="first", tags={"team": "risk"}) as run:
        run.log_params({"lr": 0.1, "depth": 3, "kind": "gbm"})
        for step in range(5):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"auc": 0.9, "acc": 0.8})
        run.set_tag("stage", "dev")
        run.log_artifact(report)
        run.log_bytes("nested/model.json", b'{"k": 1}')
        run.log_input(version)
    r = ws.runs.get(run.id)
    assert r.status == "finished" and r.ended_at is not None and r.seconds is not None
    assert r.experiment == "exp" and r.name == "first"
    assert r.params == {"lr": "0.1", "depth": "3", "kind": "gbm"}
    assert r.metrics == {"loss": 0.2, "auc": 0.9, "acc": 0.8}
    assert r.tags == {"team": "risk", "stage": "dev"}
    assert [a.path for a in r.artifacts] == ["nested/model.json", "report.txt"]
    assert ws.runs.artifact_bytes(run.id, "report.txt") == b"all good"
    assert r.inputs == ["d:1"]
    assert [m.step for m in ws.runs.metric_history(run.id, "loss")] == [0, 1, 2, 3, 4]
    assert [x.id for x in ws.runs.list(experiment="exp")] == [run.id]


def test_a_run_that_raises_is_marked_failed(workspace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ZeroDivisionError), workspace.runs.start("exp") as run:
        run.log_metric("x", 1.0)
        _ = 1 / 0
    r = workspace.runs.get(run.id)
    assert r.status == "failed"
    assert "ZeroDivisionError" in (r.error or "")
    assert r.metrics == {"x": 1.0}, "what was logged before the failure is kept"


def test_parameters_cannot_change(workspace) -> None:  # type: ignore[no-untyped-def]
    with workspace.runs.start() as run:
        run.log_param("lr", 0.1)
        run.log_param("lr", 0.1)
        with pytest.raises(Conflict, match="already '0.1'"):
            run.log_param("lr", 0.2)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "high"])
def test_metric_values_must_be_finite_numbers(workspace, value: object) -> None:  # type: ignore[no-untyped-def]
    with workspace.runs.start() as run, pytest.raises(BadInput, match="Metric 'm'"):
        run.log_metric("m", value)  # type: ignore[arg-type]


def test_unknown_run_and_experiment(workspace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound, match="No run with id 'nope'"):
        workspace.runs.get("nope")
    with workspace.runs.start("churn"):
        pass
    with pytest.raises(NotFound, match="Did you mean 'churn'"):
        workspace.runs.list(experiment="chrun")
