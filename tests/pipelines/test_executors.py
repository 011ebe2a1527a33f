"""Every executor keeps one contract, and a pipeline gives the same outputs on each."""

from __future__ import annotations

import time

import pytest

from conveyor.errors import BadInput, StoreUnavailable
from conveyor.pipelines import Executor, make_executor
from conveyor.pipelines._task import StepTask
from tests.pipelines import steps

EXECUTORS = ["local:2", "dask-local"]


def task(workspace, func, timeout=None, **inputs):  # type: ignore[no-untyped-def]
    import cloudpickle

    settings = {
        "home": str(workspace.settings.home),
        "db_url": workspace.settings.db_url,
        "artifacts_url": workspace.settings.artifacts_url,
        "options": {},
    }
    return StepTask(
        run_id="r",
        node="n",
        attempt=1,
        function=cloudpickle.dumps(func),
        sql=None,
        inputs={k: {"kind": "value", "value": v} for k, v in inputs.items()},
        params={},
        settings=settings,
        timeout=timeout,
    )


def drain(executor: Executor, count: int, deadline: float = 60.0) -> dict[str, object]:
    results: dict[str, object] = {}
    end = time.monotonic() + deadline
    while len(results) < count and time.monotonic() < end:
        for key, result in executor.poll(0.2):
            results[key] = result
    assert len(results) == count, f"only {len(results)} of {count} tasks finished"
    return results


@pytest.mark.slow
@pytest.mark.parametrize("spec", EXECUTORS)
def test_the_executor_contract(workspace, spec: str) -> None:  # type: ignore[no-untyped-def]
    executor = make_executor(spec)
    assert isinstance(executor, Executor)
    executor.start()
    try:
        assert executor.capacity >= 2
        executor.submit("a", task(workspace, steps.add.func, a=1, b=2))
        executor.submit("b", task(workspace, steps.add.func, a=10, b=20))
        executor.submit("slow", task(workspace, steps.sleepy.func, timeout=0.5, seconds=30))
        results = drain(executor, 3)
        assert results["a"].ok and results["a"].output == {"kind": "value", "value": 3}  # type: ignore[attr-defined]
        assert results["b"].output == {"kind": "value", "value": 30}  # type: ignore[attr-defined]
        slow = results["slow"]
        assert not slow.ok and slow.timed_out  # type: ignore[attr-defined]
        executor.submit("after", task(workspace, steps.add.func, a=2, b=2))
        assert drain(executor, 1)["after"].output["value"] == 4  # type: ignore[attr-defined]
    finally:
        executor.close()


@pytest.mark.slow
def test_the_same_pipeline_gives_the_same_outputs_on_dask(workspace) -> None:  # type: ignore[no-untyped-def]
    local = workspace.pipelines.run(steps.diamond, params={"n": 6}, executor="local")
    on_dask = workspace.pipelines.run(steps.diamond, params={"n": 6}, executor="dask-local", force=True)
    assert on_dask.status == "succeeded", on_dask.error
    assert on_dask.executor == "dask-local"
    assert [s.outputs for s in on_dask.steps] == [s.outputs for s in local.steps]


@pytest.mark.slow
def test_a_step_can_use_the_cluster_it_runs_on(workspace) -> None:  # type: ignore[no-untyped-def]
    run = workspace.pipelines.run(steps.partitioned, params={"parts": 4}, executor="dask-local")
    assert run.status == "succeeded", run.error
    assert run.step("spread").outputs["value"] == sum(steps._square_sum(1000 + i) for i in range(4))
    local = workspace.pipelines.run(steps.partitioned, executor="local", force=True)
    assert local.status == "failed" and "only for steps run with a Dask executor" in (local.error or "")


def test_unknown_and_unreachable_executors(workspace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match="Unknown executor 'spark'"):
        workspace.pipelines.run(steps.numbers, executor="spark")
    with pytest.raises(StoreUnavailable, match="Cannot reach the Dask scheduler at dask://127.0.0.1:1"):
        workspace.pipelines.run(steps.numbers, executor="dask://127.0.0.1:1")
    assert workspace.pipelines.runs() == [], "nothing recorded for a run that could not start"
