"""Pipelines end to end on the local executor: parallel DAGs, caching, retries, timeouts, failures, resume."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from conveyor.errors import Conflict, InvalidSpec, NotFound
from conveyor.pipelines import data, pipeline, step
from tests.pipelines import steps


def test_a_pipeline_runs_and_records_every_step(workspace) -> None:  # type: ignore[no-untyped-def]
    run = workspace.pipelines.run(steps.numbers, params={"n": 4})
    assert run.status == "succeeded", run.error
    assert [(s.name, s.status) for s in run.steps] == [
        ("make_numbers", "succeeded"),
        ("double", "succeeded"),
        ("total", "succeeded"),
    ]
    assert run.step("total").outputs == {"kind": "value", "value": 12}
    made = run.step("make_numbers").outputs
    assert made["kind"] == "data" and made["ref"] == "numbers.make_numbers:1"
    assert workspace.data.read_table(made["ref"]).column("x").to_pylist() == [0, 1, 2, 3]
    assert "making 4 numbers" in workspace.pipelines.logs(run.id, "make_numbers")
    assert run.params == {"n": 4} and run.seconds is not None


def test_a_rerun_is_cached_and_force_runs_again(workspace) -> None:  # type: ignore[no-untyped-def]
    first = workspace.pipelines.run(steps.numbers)
    again = workspace.pipelines.run(steps.numbers)
    assert [s.status for s in again.steps] == ["cached", "cached", "cached"]
    assert again.step("total").outputs == first.step("total").outputs
    changed = workspace.pipelines.run(steps.numbers, params={"n": 6})
    assert changed.step("make_numbers").status == "succeeded", "a new parameter value misses the cache"
    forced = workspace.pipelines.run(steps.numbers, force=True)
    assert all(s.status == "succeeded" for s in forced.steps)


def test_independent_branches_and_a_join(workspace) -> None:  # type: ignore[no-untyped-def]
    run = workspace.pipelines.run(steps.diamond, params={"n": 4})
    assert run.status == "succeeded"
    assert run.step("add").outputs["value"] == 12 + 6


def test_a_failing_step_is_the_users_error_with_inputs_and_traceback(workspace) -> None:  # type: ignore[no-untyped-def]
    run = workspace.pipelines.run(steps.failing)
    assert run.status == "failed"
    assert run.step("explode").status == "failed"
    assert run.step("explode").error == "[user code] ValueError: cannot handle 3 rows"
    assert "step 'explode' failed (it read failing.make_numbers:1)" in (run.error or "")
    assert "raised by the step's code" in (run.error or "")
    logs = workspace.pipelines.logs(run.id, "explode")
    assert "Traceback" in logs and "cannot handle 3 rows" in logs
    assert [a.name for a in workspace.data.list()] == ["failing.make_numbers"], "no output of a failed step"


def test_retries_with_backoff(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    @pipeline
    def retrying(marker: str = str(tmp_path / "tries")):
        steps.flaky(marker)

    run = workspace.pipelines.run(retrying)
    assert run.status == "succeeded", run.error
    assert run.step("flaky").attempts == 3
    assert run.step("flaky").outputs["value"] == "ok after 3 tries"


def test_a_timeout_stops_the_process(workspace) -> None:  # type: ignore[no-untyped-def]
    @pipeline
    def slow():
        steps.sleepy(30)

    run = workspace.pipelines.run(slow)
    assert run.status == "failed"
    assert run.step("sleepy").error.startswith("[timeout] timed out after")
    assert (run.seconds or 99) < 20, "the 30 s sleep was cut at its 1 s timeout"


def test_continue_on_failure_skips_only_the_branch(workspace) -> None:  # type: ignore[no-untyped-def]
    run = workspace.pipelines.run(steps.with_branch)
    assert run.status == "succeeded"
    states = {s.name: s.status for s in run.steps}
    assert states == {
        "make_numbers": "succeeded",
        "optional_failure": "failed",
        "after_optional": "skipped",
        "total": "succeeded",
    }


def test_sql_steps_and_data_inputs_with_lineage(workspace) -> None:  # type: ignore[no-untyped-def]
    version, _ = workspace.data.commit_table(pa.table({"x": [1, 2, 3, 4]}), name="nums", source={})
    run = workspace.pipelines.run(steps.from_data, params={"threshold": 3})
    assert run.status == "succeeded", run.error
    assert run.step("count_rows").outputs["value"] == 2
    big = run.step("filter_big").outputs
    assert workspace.data.get(big["ref"]).parents == [version.id]
    edges = workspace.lineage.edges("data_version", version.id)
    relations = {(e.from_kind, e.relation, e.to_kind) for e in edges}
    assert {
        ("data_version", "read_by", "step_run"),
        ("step_run", "produced", "data_version"),
        ("data_version", "derived", "data_version"),
    } <= relations


def test_resume_finishes_a_failed_run(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "gate"

    @step
    def guarded(frame, gate_path: str) -> int:  # type: ignore[no-untyped-def]
        if not Path(gate_path).exists():
            raise RuntimeError("the gate is closed")
        return len(frame)

    @pipeline
    def gated(gate_path: str = str(gate)):
        guarded(steps.make_numbers(3), gate_path)

    failed = workspace.pipelines.run(gated)
    assert failed.status == "failed" and failed.step("make_numbers").status == "succeeded"
    gate.write_text("open")
    resumed = workspace.pipelines.resume(failed.id)
    assert resumed.id == failed.id and resumed.status == "succeeded"
    assert resumed.step("guarded").outputs["value"] == 3
    assert resumed.step("make_numbers").outputs == failed.step("make_numbers").outputs, "kept, not re-run"
    with pytest.raises(Conflict, match="already succeeded"):
        workspace.pipelines.resume(failed.id)


def test_bad_definitions_are_explained() -> None:
    with pytest.raises(InvalidSpec, match="needs 'frame' and nothing gives it"):

        @pipeline
        def missing():
            steps.double()

    with pytest.raises(InvalidSpec, match="takes 'a' as int, but step 'make_numbers' returns DataFrame"):

        @pipeline
        def mismatched():
            steps.add(steps.make_numbers(), 1)

    with pytest.raises(InvalidSpec, match="has no argument 'frme'.*Did you mean 'frame'"):

        @pipeline
        def typo():
            steps.double(frme=steps.make_numbers())

    with pytest.raises(InvalidSpec, match="calls no step"):

        @pipeline
        def empty():
            pass

    with pytest.raises(InvalidSpec, match="a JSON value"):

        @pipeline
        def bad_constant():
            steps.total(object())

    assert data("churn@latest").ref == "churn@latest"


def test_unknown_parameters_and_names(workspace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidSpec, match="has no parameter 'm'.*Its parameters: n"):
        workspace.pipelines.run(steps.numbers, params={"m": 3})
    with pytest.raises(NotFound, match="No pipeline named 'nope'"):
        workspace.pipelines.run("nope")
    with pytest.raises(NotFound, match="No pipeline run"):
        workspace.pipelines.get_run("missing")


def test_a_step_outside_a_pipeline_is_a_plain_function() -> None:
    assert steps.add(2, 3) == 5
