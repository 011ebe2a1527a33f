"""Deploying a registered model as a real HTTP process, scoring through it, stopping it."""

from __future__ import annotations

import os

import httpx
import orjson
import pytest

from conveyor.errors import EndpointError, InvalidSpec, NotFound


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return finished != pid


@pytest.mark.slow
def test_deploy_invoke_and_stop(workspace, churn_training) -> None:  # type: ignore[no-untyped-def]
    result, signature, frame = churn_training
    workspace.models.register("churn", result.model, signature=signature)
    deployment = workspace.endpoints.deploy("churn", "churn:1")
    try:
        assert deployment.status == "running"
        assert deployment.url is not None and deployment.url.startswith("http://127.0.0.1:")
        assert deployment.pid is not None and _alive(deployment.pid)
        records = orjson.loads(frame.to_json(orient="records", date_format="iso"))
        assert workspace.endpoints.invoke("churn", records) == result.model.predict(frame).tolist()
        bad = httpx.post(f"{deployment.url}/predict", json=[{"nope": 1}])
        assert bad.status_code == 422
        with pytest.raises(InvalidSpec, match="refused the rows \\(422\\): Unknown field 'nope'"):
            workspace.endpoints.invoke("churn", [{"nope": 1}])
        shown = workspace.endpoints.get("churn")
        assert shown.url == deployment.url
        assert [(d.name, d.model, d.status) for d in shown.deployments] == [("default", "churn:1", "running")]
        edges = workspace.lineage.edges("deployment", deployment.id, direction="upstream")
        assert ("model_version", "served_by") in {(e.from_kind, e.relation) for e in edges}
    finally:
        stopped = workspace.endpoints.stop("churn")
    assert not _alive(deployment.pid)
    assert stopped.deployments[0].status == "stopped"
    with pytest.raises(NotFound, match="has no running deployment"):
        workspace.endpoints.invoke("churn", records)


def _explode() -> None:
    raise RuntimeError("this model refuses to load")


class FailsToLoad:
    """Pickles fine; unpickling it in the serving process raises."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_explode, ())


@pytest.mark.slow
def test_a_deployment_that_cannot_start_reports_its_log(workspace) -> None:  # type: ignore[no-untyped-def]
    workspace.models.register("broken", FailsToLoad())
    with pytest.raises(EndpointError, match="Last lines of its log") as info:
        workspace.endpoints.deploy("broken", "broken:1", timeout=60)
    assert "this model refuses to load" in str(info.value)
    assert workspace.endpoints.get("broken").deployments[0].status == "failed"


def test_unknown_endpoint_and_model(workspace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound, match="No endpoint named 'x'"):
        workspace.endpoints.get("x")
    with pytest.raises(NotFound, match="No model named 'nope'"):
        workspace.endpoints.deploy("x", "nope@champion")
