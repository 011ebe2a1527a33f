"""Endpoint lifecycles under limits and concurrency: workers and process ceilings, one change of an endpoint at a
time across threads and processes, supervisors that leave when their endpoint goes, orphans and gc."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.linear_model import LogisticRegression

from conveyor.config import resolve_settings
from conveyor.errors import BadInput, Conflict, InvalidConfig, NotFound
from conveyor.store._locks import named_lock
from tests.conftest import wait_until


def _model(ws: Any, name: str = "lr") -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    model = LogisticRegression().fit(frame, (frame.a > 0).astype(int))
    ws.models.register(name, model, input_example=frame.head(5))


def _alive(pid: int) -> bool:
    from conveyor.serve._endpoints import _running

    return _running(pid)


def _supervisors(ws: Any, endpoint: str) -> list[int]:
    from conveyor.serve._endpoints import _serving_processes

    return [pid for pid, (name, sid) in _serving_processes(ws.settings.home).items() if name == endpoint and pid == sid]


@pytest.fixture
def limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from conveyor import Workspace

    monkeypatch.setenv("CONVEYOR_MAX_WORKERS", "1")
    monkeypatch.setenv("CONVEYOR_MAX_PROCESSES", "3")
    ws = Workspace.open(tmp_path / "ws")
    _model(ws)
    yield ws
    for endpoint in ws.endpoints.list():
        ws.endpoints.delete(endpoint.name)
    ws.close()


# -- limits ------------------------------------------------------------------------------------------------


def test_serving_limits_come_from_the_environment_and_conveyor_toml(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    home.mkdir()
    cpus = os.cpu_count() or 1
    default = resolve_settings(home, env={})
    assert (default.max_workers, default.max_processes) == (cpus, 4 * cpus + 4)
    (home / "conveyor.toml").write_text("[serving]\nmax_workers = 3\nmax_processes = 9\n")
    from_file = resolve_settings(home, env={})
    assert (from_file.max_workers, from_file.max_processes) == (3, 9)
    from_env = resolve_settings(home, env={"CONVEYOR_MAX_WORKERS": "5"})
    assert (from_env.max_workers, from_env.max_processes) == (5, 9)
    assert from_env.origin["max_workers"] == "env" and from_env.origin["max_processes"] == "conveyor.toml"
    with pytest.raises(InvalidConfig, match="CONVEYOR_MAX_PROCESSES is 'many'; it must be a whole number"):
        resolve_settings(home, env={"CONVEYOR_MAX_PROCESSES": "many"})
    (home / "conveyor.toml").write_text("[serving]\nmax_workers = 0\n")
    with pytest.raises(InvalidConfig, match=r"\[serving\] max_workers in .* is 0"):
        resolve_settings(home, env={})


def test_more_workers_than_the_workspace_allows_are_refused(limited: Any) -> None:
    with pytest.raises(BadInput, match=r"asks for 2 workers; this workspace allows at most 1 per endpoint") as info:
        limited.endpoints.create("big", workers=2)
    assert "[serving] max_workers" in info.value.message and "CONVEYOR_MAX_WORKERS" in info.value.message
    with pytest.raises(NotFound):
        limited.endpoints.get("big")


@pytest.mark.slow
def test_endpoint_processes_are_bounded_in_all(limited: Any) -> None:
    ws = limited
    ws.endpoints.deploy("one", "lr")  # workers=0: one per core, within max_workers = 1
    assert len(ws.endpoints.get("one").workers) == 1
    with pytest.raises(BadInput, match=r"needs 2 processes .* already use 2 of at most 3 \(max_processes\)") as info:
        ws.endpoints.deploy("two", "lr")
    assert "CONVEYOR_MAX_PROCESSES" in info.value.message and "conveyor endpoints stop NAME" in info.value.message
    with pytest.raises(NotFound):  # a new endpoint that could not start is not left behind
        ws.endpoints.get("two")
    ws.endpoints.create("two")
    ws.endpoints.stop("one")
    ws.endpoints.deploy("two", "lr")
    with pytest.raises(BadInput, match="max_processes"):
        ws.endpoints.start("one")
    assert ws.endpoints.get("one").deployments  # what it served is kept for when there is room


# -- the per-endpoint lock ---------------------------------------------------------------------------------


def _hold_in_another_process(ws: Any, name: str) -> subprocess.Popen[str]:
    """A process that takes lock ``name`` of ``ws``, says 'held', and keeps it until its stdin closes."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from conveyor import Workspace\n"
        "from conveyor.store._locks import named_lock\n"
        "ws = Workspace.open(sys.argv[1], db_url=sys.argv[2])\n"
        "with named_lock(ws.store.engine, Path(sys.argv[1]) / 'run', sys.argv[3], timeout=30, busy='busy'):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(ws.settings.home), ws.settings.db_url, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


@pytest.mark.parametrize("name", ["endpoint:churn", "endpoint:../../etc/passwd", "endpoint:prévision-é"])
def test_a_named_lock_excludes_other_processes_and_threads_until_released(any_workspace: Any, name: str) -> None:
    ws = any_workspace
    run = ws.settings.home / "run"
    process = _hold_in_another_process(ws, name)
    try:
        with (
            pytest.raises(Conflict, match="busy elsewhere"),
            named_lock(ws.store.engine, run, name, timeout=0.3, busy="busy elsewhere"),
        ):
            pass
        with named_lock(ws.store.engine, run, f"{name}-other", timeout=5, busy="-"):
            pass  # another name is not held
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(30)
    with named_lock(ws.store.engine, run, name, timeout=10, busy="-"):
        with named_lock(ws.store.engine, run, name, timeout=0.1, busy="-"):
            pass  # re-entrant within a thread
        outcome: list[str] = []

        def other_thread() -> None:
            try:
                with named_lock(ws.store.engine, run, name, timeout=0.3, busy="busy"):
                    outcome.append("acquired")
            except Conflict:
                outcome.append("waited")

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(30)
        assert outcome == ["waited"]


@pytest.mark.slow
def test_deploy_and_start_at_once_give_one_supervisor(limited: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = limited
    ws.endpoints.deploy("race", "lr")
    ws.endpoints.stop("race")
    errors: list[BaseException] = []

    def run(action: Any) -> None:
        try:
            action()
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(lambda: ws.endpoints.deploy("race", "lr", deployment="green"),)),
        threading.Thread(target=run, args=(lambda: ws.endpoints.start("race"),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    endpoint = ws.endpoints.get("race")
    assert endpoint.status == "running" and _supervisors(ws, "race") == [endpoint.pid]
    assert ws.endpoints.orphans() == []


@pytest.mark.slow
def test_delete_during_a_deploy_stops_what_the_deploy_started(limited: Any) -> None:
    ws = limited
    deployed: list[Any] = []
    deploy = threading.Thread(target=lambda: deployed.append(ws.endpoints.deploy("doomed", "lr")))
    deploy.start()
    # Wait until the deploy has started the supervisor (recorded at once), then delete.
    wait_until(lambda: _supervisors(ws, "doomed"), timeout=60, what="the deploy's supervisor")
    started = _supervisors(ws, "doomed")[0]
    ws.endpoints.delete("doomed")
    deploy.join(120)
    assert deployed, "the deploy finished first (delete waited for it)"
    with pytest.raises(NotFound):
        ws.endpoints.get("doomed")
    wait_until(lambda: not _alive(started), timeout=30, what="the deploy's supervisor to stop")
    assert _supervisors(ws, "doomed") == [] and ws.endpoints.orphans() == []


@pytest.mark.slow
def test_a_supervisor_whose_endpoint_vanished_exits_by_itself(limited: Any) -> None:
    from conveyor.store._schema import DeploymentRow, EndpointRow

    ws = limited
    ws.endpoints.deploy("vanish", "lr")
    endpoint = ws.endpoints.get("vanish")
    with ws.store.write() as session:  # as if the rows were removed behind the control plane's back
        row = session.scalars(sa.select(EndpointRow).filter_by(name="vanish")).one()
        session.execute(sa.delete(DeploymentRow).where(DeploymentRow.endpoint_id == row.id))
        session.delete(row)
    wait_until(lambda: not _alive(endpoint.pid), timeout=30, what="the supervisor to exit by itself")
    assert all(not _alive(w) for w in endpoint.workers)


@pytest.mark.slow
def test_orphans_are_listed_and_gc_ends_them(limited: Any, cli: Any) -> None:
    from conveyor.store._schema import EndpointRow

    ws = limited
    ws.endpoints.deploy("lost", "lr")
    endpoint = ws.endpoints.get("lost")
    with ws.store.write() as session:  # the record no longer knows its process
        session.scalars(sa.select(EndpointRow).filter_by(name="lost")).one().pid = None
    orphans = ws.endpoints.orphans()
    assert [(o.pid, o.endpoint, o.reason) for o in orphans] == [
        (endpoint.pid, "lost", "endpoint 'lost' records no process (it is stopped)")
    ]
    assert orphans[0].workers == endpoint.workers
    home = str(ws.settings.home)
    listed = cli("--home", home, "endpoints", "list", "--json")
    assert listed.code == 0 and [o["pid"] for o in listed.json["orphans"]] == [endpoint.pid]
    human = cli("--home", home, "endpoints", "list")
    assert "1 serving process(es) no endpoint accounts for" in human.out and str(endpoint.pid) in human.out
    ended = cli("--home", home, "endpoints", "gc", "--json", "--grace", "20")
    assert ended.code == 0 and [(o["pid"], o["signal"]) for o in ended.json["ended"]] == [(endpoint.pid, "SIGTERM")]
    assert not _alive(endpoint.pid) and all(not _alive(w) for w in endpoint.workers)
    assert ws.endpoints.orphans() == []
    assert cli("--home", home, "endpoints", "gc").out.strip() == "No orphaned serving processes."


# -- hostile values over REST ------------------------------------------------------------------------------


def test_empty_huge_and_hostile_values_are_refused_with_4xx(workspace: Any) -> None:
    from tests.api_client import api_client

    client = api_client(workspace)
    workspace.endpoints.create("e")
    empty = client.put("/api/v1/endpoints/e/traffic", json={"shares": {}})
    assert empty.status_code == 422
    assert "Give the traffic share of at least one deployment of 'e'" in empty.json()["error"]["message"]
    for shares in ({"a": 2**63}, {"a": 10**30}, {"a": -1}):
        assert client.put("/api/v1/endpoints/e/traffic", json={"shares": shares}).status_code == 422
        assert client.put("/api/v1/endpoints/e/mirror", json={"shares": shares}).status_code == 422
    hostile = client.put("/api/v1/endpoints/e/traffic", json={"shares": {"../x\u0000é": 100}})
    assert hostile.status_code == 422
    assert "has no deployment '../x\\x00é'" in hostile.json()["error"]["message"]
    for method, path in (
        ("put", "/api/v1/endpoints/x%00/traffic"),
        ("post", "/api/v1/endpoints/x%00/rollback"),
        ("get", "/api/v1/endpoints/%C3%A9/keys"),
        ("post", "/api/v1/endpoints/x%00/keys/primary"),
        ("post", "/api/v1/endpoints/x%00/stop"),
        ("delete", "/api/v1/endpoints/x%00"),
    ):
        kwargs = {"json": {"shares": {"a": 100}}} if method == "put" else {}
        answer = getattr(client, method)(path, **kwargs)
        assert answer.status_code == 404, (path, answer.text)
        assert "endpoint names are 1-128 letters" in answer.json()["error"]["message"]
    assert client.post("/api/v1/endpoints/e/keys/tertiary").status_code == 422
    for body in (
        {"name": "h", "host": "../etc"},
        {"name": "i", "idle_timeout": "Infinity"},
        {"name": "r", "rate_limit": 1e308},
        {"name": "w", "workers": 10**20},
    ):
        refused = client.post("/api/v1/endpoints", json=body)
        assert refused.status_code in (400, 422), (body, refused.text)
    with pytest.raises(BadInput, match="not a valid endpoint name"):
        workspace.endpoints.process_log("../../etc/passwd")
