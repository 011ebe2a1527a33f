"""An AutoML run (``conveyor train``) SIGKILLed mid-search: at the next read its run and the trial that was
running show ``crashed`` (finished trials keep their status), no scratch is left, and its trial worker processes
(``python -m conveyor.train._worker``) do not outlive it."""

from __future__ import annotations

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
from tests.faults._chaos import cli_json, cpu_seconds, long_only, process_line, session_processes, tree_bytes

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the trial workers in /proc (Linux)"),
]


def _workspace(home: Path, rows: int) -> None:
    from conveyor.quickstart import make_churn_frame

    csv = home.parent / f"churn-{rows}.csv"
    make_churn_frame(rows, seed=1).to_csv(csv, index=False)
    with Workspace.open(home) as ws:
        ws.data.ingest(csv, name="churn")


def _train(home: Path, *args: str, budget: float = 60) -> subprocess.Popen[bytes]:
    """``conveyor train`` in a session of its own (its trial workers stay in it, so they can be found)."""
    from conveyor.quickstart import TARGET

    command = ["--home", str(home), "train", "-d", "churn@latest", "-t", TARGET, "-x", "customer_id"]
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *command, "--time-budget", str(budget), *args, "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _workers(trainer: subprocess.Popen[bytes]) -> list[int]:
    return [pid for pid in session_processes(trainer.pid) if "conveyor.train._worker" in process_line(pid)]


def _kill_mid_trial(
    home: Path, trainer: subprocess.Popen[bytes], *, first: str = "finished", into_fit: float = 0.0
) -> list[int]:
    """SIGKILL the trainer (only it) while a trial runs, once trial-0 is ``first`` (finished: a later trial runs)
    and a worker has spent ``into_fit`` more seconds of CPU since; returns its trial workers' PIDs."""
    with Workspace.open(home) as ws:

        def mid_search() -> bool:
            statuses = {r.name: r.status for r in ws.runs.list()}
            return statuses.get("trial-0") == first and any(
                name.startswith("trial-") and status == "running" for name, status in statuses.items()
            )

        wait_until(mid_search, timeout=120, interval=0.1, what="a trial to run after the first finished")
    workers = _workers(trainer)
    if into_fit:
        spent = {pid: cpu_seconds(pid) for pid in workers}
        wait_until(
            lambda: any(cpu_seconds(pid) - cpu >= into_fit for pid, cpu in spent.items()),
            timeout=120,
            what="a worker to be into its fit",
        )
    assert workers, "the search runs its trials in worker processes"
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(30)
    return workers


def _assert_crashed_runs(home: Path) -> None:
    """The next read (a CLI process) marks the run and the running trial crashed; no run stays running."""
    listed = cli_json("--home", str(home), "runs", "list")
    assert isinstance(listed, dict)
    assert {r["name"]: r["status"] for r in listed["runs"]}["automl-churned"] == "crashed", listed
    with Workspace.open(home) as ws:
        statuses = {r.name: r.status for r in ws.runs.list()}
        assert statuses.pop("trial-0") == "finished", statuses
        assert "running" not in statuses.values(), statuses
        assert "crashed" in statuses.values(), "the trial that was running is crashed too"
        assert tree_bytes(home / "artifacts" / "tmp") == 0
        parent = next(r for r in ws.runs.list() if r.name == "automl-churned")
        assert parent.ended_at is not None and "is gone" in (parent.error or "")


def test_a_killed_search_leaves_crashed_runs_and_no_worker(tmp_path: Path) -> None:
    """Small data: a fold fits in well under a second, so a worker meets the closed pipe at once."""
    home = tmp_path / "ws"
    _workspace(home, 3000)
    trainer = _train(home, "--learner", "hist_gb")
    try:
        workers = _kill_mid_trial(home, trainer)
        killed = time.monotonic()
        wait_until(lambda: not session_processes(trainer.pid), timeout=30, what="the trial workers to exit")
        print(f"{len(workers)} trial workers gone {time.monotonic() - killed:.2f} s after the kill")
        _assert_crashed_runs(home)
    finally:
        _stop_group(trainer)


def test_a_worker_mid_fold_exits_with_its_killed_search(tmp_path: Path) -> None:
    """Big enough data that a fold fits for seconds: the worker must not finish it for nobody."""
    home = tmp_path / "ws"
    _workspace(home, 30_000)
    trainer = _train(home, "--learner", "random_forest")
    try:
        _kill_mid_trial(home, trainer, first="running", into_fit=2.5)
        killed = time.monotonic()
        deadline = killed + 3
        while session_processes(trainer.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [process_line(pid) for pid in session_processes(trainer.pid)]
        assert not left, f"still running {time.monotonic() - killed:.1f} s after the kill: {left}"
    finally:
        _stop_group(trainer)


@long_only
def test_searches_killed_at_random_moments_never_stay_running(tmp_path: Path) -> None:
    """Kills at any moment (loading data, trials, refit, ensemble, evaluation, charts, registering): the next
    read shows no run as running, and no worker of a killed search remains."""
    kills = 4
    rng = random.Random(15)
    home = tmp_path / "ws"
    _workspace(home, 3000)
    for _ in range(kills):
        trainer = _train(home, "--register", "churn", budget=15)
        try:
            time.sleep(rng.uniform(1.0, 16.0))
            if trainer.poll() is None:
                trainer.send_signal(signal.SIGKILL)
                trainer.wait(30)
            wait_until(lambda: not session_processes(trainer.pid), timeout=30, what="the trial workers to exit")  # noqa: B023
        finally:
            _stop_group(trainer)
    cli_json("--home", str(home), "runs", "list")  # a read by another process marks what crashed
    with Workspace.open(home) as ws:
        statuses = [r.status for r in ws.runs.list(limit=10_000)]
    assert "running" not in statuses, statuses
    assert tree_bytes(home / "artifacts" / "tmp") == 0
    print(f"{kills} searches killed: {sorted(set(statuses))}")


def _stop_group(trainer: subprocess.Popen[bytes]) -> None:
    """Whatever of the search still runs when a test fails (the trainer leads its own session)."""
    if trainer.poll() is None:
        trainer.kill()
        trainer.wait(30)
    for pid in session_processes(trainer.pid):
        os.kill(pid, signal.SIGKILL)
