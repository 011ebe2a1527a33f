"""A pipeline runner SIGKILLed mid-run: the next read marks the run and its running steps ``crashed``; resume
finishes it."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor import Workspace
from tests.conftest import wait_until
from tests.faults._chaos import long_only, process_line, session_processes

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
FINAL = {"succeeded", "cached", "failed", "skipped", "not run", "crashed", "killed"}


def _runner(home: Path, *args: str) -> subprocess.Popen[bytes]:
    """``conveyor pipeline run`` in a session of its own: its worker processes can be found (and stopped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "--home", str(home), "pipeline", "run", *args, "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )


def _kill_runner(runner: subprocess.Popen[bytes]) -> None:
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=30)


def _stop_group(runner: subprocess.Popen[bytes]) -> None:
    """The runner's orphaned worker processes (a SIGKILL gives it no chance to stop them)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(runner.pid, signal.SIGKILL)


def _wait_for_the_blocking_step(ws: Workspace) -> None:
    def blocked() -> bool:
        runs = ws.pipelines.runs()
        return bool(runs) and runs[0].step("wait_for").status == "running"

    wait_until(blocked, timeout=90, what="the runner to start the blocking step")


def test_a_runner_killed_mid_step_leaves_a_crashed_run_that_resume_finishes(tmp_path: Path) -> None:
    home, gate = tmp_path / "ws", tmp_path / "gate"
    Workspace.open(home).close()
    runner = _runner(home, "tests.pipelines.steps:gated_wait", "--param", f"gate={gate}")
    try:
        with Workspace.open(home) as ws:
            _wait_for_the_blocking_step(ws)
            run_id = ws.pipelines.runs()[0].id
            _kill_runner(runner)
            run = ws.pipelines.get_run(run_id)
            assert run.status == "crashed", run
            assert f"PID {runner.pid}" in (run.error or "") and "conveyor pipeline resume" in (run.error or "")
            assert run.ended_at is not None
            assert {s.name: s.status for s in run.steps} == {"make_numbers": "succeeded", "wait_for": "crashed"}
            assert "output was not recorded" in (run.step("wait_for").error or "")
            gate.write_text("open")
            resumed = ws.pipelines.resume(run_id)
            assert resumed.status == "succeeded" and resumed.step("wait_for").outputs["value"] == 3
    finally:
        _stop_group(runner)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the run's processes in /proc (Linux)")
def test_no_process_of_a_killed_runner_outlives_it(tmp_path: Path) -> None:
    """Only the runner is SIGKILLed (not its process group): its step worker, mid-step, and the forkserver and
    resource tracker behind it exit by themselves; the run is then crashed and resumes to success."""
    home, gate = tmp_path / "ws", tmp_path / "gate"
    Workspace.open(home).close()
    runner = _runner(home, "tests.pipelines.steps:gated_wait", "--param", f"gate={gate}")
    try:
        with Workspace.open(home) as ws:
            _wait_for_the_blocking_step(ws)
            before = [pid for pid in session_processes(runner.pid) if pid != runner.pid]
            assert any("forkserver" in process_line(pid) for pid in before), [process_line(p) for p in before]
            assert len(before) >= 3, "a step worker, the forkserver and the resource tracker run"
            _kill_runner(runner)
            killed_at = time.monotonic()
            left = lambda: session_processes(runner.pid)  # noqa: E731
            wait_until(lambda: not left(), timeout=20, what=f"the run's processes to exit: {left()}")
            print(f"{len(before)} processes of the run gone {time.monotonic() - killed_at:.2f} s after the kill")
            run = ws.pipelines.runs()[0]
            assert run.status == "crashed" and run.step("wait_for").status == "crashed", run
            gate.write_text("open")
            assert ws.pipelines.resume(run.id).status == "succeeded"
    finally:
        _stop_group(runner)


@long_only
def test_runners_killed_at_random_moments_never_stay_running(tmp_path: Path) -> None:
    """Whenever the SIGKILL lands after the run is recorded (starting a worker, mid-step, while committing a
    version, after the end), the next read shows no run and no step as running, and every crashed run resumes
    to success."""
    kills = 6
    rng = random.Random(4)
    home = tmp_path / "ws"
    Workspace.open(home).close()
    for i in range(kills):
        runner = _runner(home, "tests.pipelines.steps:numbers", "--param", f"n={1000 + i}", "--force")
        try:
            with Workspace.open(home) as ws:
                wait_until(lambda: len(ws.pipelines.runs()) > i, timeout=90, what="the run to be recorded")  # noqa: B023
            time.sleep(rng.uniform(0.0, 4.0))
            _kill_runner(runner)
        finally:
            _stop_group(runner)
    with Workspace.open(home) as ws:
        runs = ws.pipelines.runs()
        assert len(runs) == kills
        for run in runs:
            assert run.status in ("crashed", "succeeded"), run
            assert {s.status for s in run.steps} <= FINAL, run
        for run in runs:
            if run.status == "crashed":
                assert ws.pipelines.resume(run.id).status == "succeeded"
        print(f"{len(runs)} runs recorded of {kills} killed: {sorted(r.status for r in runs)}")


def test_the_runner_beats_while_its_steps_run(workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    import sqlalchemy as sa

    from conveyor.store._schema import PipelineRunRow
    from tests.pipelines.steps import gated_wait

    monkeypatch.setattr("conveyor.pipelines._runner.HEARTBEAT_SECONDS", 0.05)
    gate = tmp_path / "gate"
    done: list[object] = []
    params = {"gate": str(gate)}
    runner = threading.Thread(target=lambda: done.append(workspace.pipelines.run(gated_wait, params=params)))
    runner.start()

    def beats() -> list[object]:
        with workspace.store.read() as session:
            return list(session.scalars(sa.select(PipelineRunRow.heartbeat_at)))

    try:
        wait_until(lambda: beats() and beats()[0] is not None, timeout=90, what="the run to be recorded")
        first = beats()[0]
        wait_until(lambda: beats()[0] != first, timeout=30, what="a heartbeat while the step blocks")
        assert workspace.pipelines.mark_crashed() == [], "a live runner's run is not crashed"
    finally:
        gate.write_text("open")
        runner.join(120)
    assert done and getattr(done[0], "status", None) == "succeeded"
