"""Runs whose process is gone are marked ``crashed``; runs whose process lives never are, whatever the clocks say."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor import Workspace
from conveyor._owner import this_process
from conveyor.store._schema import RunRow, utcnow
from tests.tracking.test_writer import run_script


def _set(ws: Workspace, run_id: str, **values: object) -> None:
    with ws.store.write() as session:
        session.execute(sa.update(RunRow).where(RunRow.id == run_id).values(**values))


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_run_records_its_process_and_a_heartbeat(any_workspace) -> None:  # type: ignore[no-untyped-def]
    ws = any_workspace
    run = ws.runs.start("procs")
    with ws.store.read() as session:
        row = session.get(RunRow, run.id)
        assert row is not None
        me = this_process()
        assert (row.process_host, row.process_pid, row.process_key) == (me.host, me.pid, me.key)
        assert row.heartbeat_at is not None
    run.end()


def test_a_live_process_on_this_machine_keeps_its_run_whatever_its_heartbeat_says(any_workspace) -> None:  # type: ignore[no-untyped-def]
    """A clock set back (or forward) during a run makes its heartbeat look old (or new): the PID decides."""
    ws = any_workspace
    sleeper = _sleeper()
    try:
        me = this_process()
        key = f"{me.namespace}:{_ticks(sleeper.pid)}"
        for beat in (utcnow() - timedelta(days=3), utcnow() + timedelta(days=3), None):
            run = ws.runs.start("clocks")
            ws.runs._writer.unwatch(run.id)  # no beats from this process: the row alone speaks
            _set(ws, run.id, process_pid=sleeper.pid, process_key=key, heartbeat_at=beat)
            assert ws.runs.mark_crashed() == []
            assert ws.runs.get(run.id).status == "running"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sorted(ws.runs.mark_crashed()) == sorted(r.id for r in ws.runs.list("clocks"))
    assert {r.status for r in ws.runs.list("clocks")} == {"crashed"}


def test_a_reused_pid_does_not_keep_a_dead_run_alive(workspace) -> None:  # type: ignore[no-untyped-def]
    sleeper = _sleeper()
    try:
        run = workspace.runs.start("reuse")
        workspace.runs._writer.unwatch(run.id)
        # the sleeper holds the PID now, but the run's process started at another time
        _set(workspace, run.id, process_pid=sleeper.pid, process_key=f"{this_process().namespace}:12345")
        found = workspace.runs.get(run.id)
        assert found.status == "crashed"
        assert f"PID {sleeper.pid} now belongs to another process" in (found.error or "")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_run_on_another_machine_is_judged_by_its_heartbeat_on_the_database_clock(any_workspace) -> None:  # type: ignore[no-untyped-def]
    ws = any_workspace
    fresh, stale, future = (ws.runs.start("remote") for _ in range(3))
    for run, age in ((fresh, timedelta(seconds=20)), (stale, timedelta(seconds=75)), (future, -timedelta(hours=2))):
        ws.runs._writer.unwatch(run.id)
        # same PID as this process, but another machine: the PID says nothing there
        _set(ws, run.id, process_host="gpu-box-7", process_key="0123456789:42", heartbeat_at=utcnow() - age)
    assert ws.runs.mark_crashed() == [stale.id]
    crashed = ws.runs.get(stale.id)
    assert crashed.status == "crashed"
    assert "(PID" in (crashed.error or "") and "on gpu-box-7" in (crashed.error or "")
    assert "sent no heartbeat for 7" in (crashed.error or "")
    assert ws.runs.get(fresh.id).status == "running"
    assert ws.runs.get(future.id).status == "running", "a heartbeat from the future is young, not stale"


def test_a_run_marked_crashed_by_mistake_comes_back_with_its_next_heartbeat_and_ends_true(workspace) -> None:  # type: ignore[no-untyped-def]
    run = workspace.runs.start("partition")
    run.log_metric("x", 1.0)
    _set(workspace, run.id, status="crashed", error="no heartbeat", ended_at=utcnow())
    writer = workspace.runs._writer
    writer._beat([run.id])
    again = workspace.runs.get(run.id)
    assert (again.status, again.error, again.ended_at) == ("running", None, None)
    run.end()
    assert workspace.runs.get(run.id).status == "finished"


def test_runs_from_before_processes_were_recorded_stay_as_they_are(workspace) -> None:  # type: ignore[no-untyped-def]
    run = workspace.runs.start("legacy")
    workspace.runs._writer.unwatch(run.id)
    _set(workspace, run.id, process_host=None, process_pid=None, process_key=None, heartbeat_at=None)
    assert workspace.runs.mark_crashed() == []
    assert workspace.runs.get(run.id).status == "running"


@pytest.mark.parametrize(
    ("ending", "status", "error"),
    [
        ("pass", "finished", None),
        ("raise RuntimeError('boom')", "failed", "RuntimeError: boom"),
        ("ws.close()", "finished", None),
    ],
)
def test_a_run_left_open_ends_with_the_process_not_as_a_crash(
    tmp_path: Path, ending: str, status: str, error: str | None
) -> None:
    home = tmp_path / "ws"
    process = run_script(
        home,
        f"""
        ws = Workspace.open(sys.argv[1])
        run = ws.runs.start("open")
        print(run.id, flush=True)
        run.log_metric("m", 1.0, step=7)
        {ending}
        """,
    )
    run_id = process.stdout.readline().strip()  # type: ignore[union-attr]
    with Workspace.open(home) as ws:
        run = ws.runs.get(run_id)
        assert (run.status, run.error) == (status, error)
        assert run.metrics == {"m": 1.0}


def test_heartbeats_are_not_audit_entries(workspace) -> None:  # type: ignore[no-untyped-def]
    run = workspace.runs.start("quiet")

    def entries() -> int:
        with workspace.store.read() as session:
            return int(session.scalar(sa.text("SELECT count(*) FROM audit_events")) or 0)

    before = entries()
    for _ in range(3):
        workspace.runs._writer._beat([run.id])
    assert entries() == before, "heartbeats are bookkeeping, not anyone's action"
    run.end()
    assert entries() == before + 1, "ending the run is one audited change"


def _ticks(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2 :].split()[19]


def test_the_scheduler_marks_crashed_runs_without_anyone_reading_them(workspace) -> None:  # type: ignore[no-untyped-def]
    from conveyor.pipelines import Scheduler

    sleeper = _sleeper()
    run = workspace.runs.start("scheduled")
    workspace.runs._writer.unwatch(run.id)
    _set(workspace, run.id, process_pid=sleeper.pid, process_key=f"{this_process().namespace}:{_ticks(sleeper.pid)}")
    sleeper.kill()
    sleeper.wait()
    Scheduler(workspace).tick()
    with workspace.store.read() as session:  # the row itself, not a read that would mark it
        row = session.get(RunRow, run.id)
        assert row is not None and row.status == "crashed" and row.ended_at is not None


def test_the_writer_thread_beats_while_the_run_is_open_and_stops_when_it_ends(workspace, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import wait_until

    monkeypatch.setattr("conveyor.tracking._writer.HEARTBEAT_SECONDS", 0.05)

    def beat() -> object:
        with workspace.store.read() as session:
            return session.scalar(sa.select(RunRow.heartbeat_at).where(RunRow.id == run.id))

    run = workspace.runs.start("beats")  # nothing logged: the heartbeat alone shows the process lives
    first = beat()
    wait_until(lambda: beat() != first, timeout=10, what="a heartbeat")
    run.end()
    ended = beat()
    time.sleep(0.3)
    assert beat() == ended, "an ended run gets no more heartbeats"
