"""The buffered writer: nothing logged is lost on a crash, Ctrl+C or SIGTERM; failures are never silent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from conveyor import Workspace
from conveyor.errors import Conflict, ConveyorError
from tests.conftest import wait_until


def run_script(home: Path, body: str, *, wait: bool = True) -> subprocess.Popen[str]:
    script = "import sys, os, time\nfrom conveyor import Workspace\n" + textwrap.dedent(body)
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    if wait:
        process.wait(timeout=120)
    return process


def test_an_uncaught_exception_outside_a_with_block_still_stores_everything(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    process = run_script(
        home,
        """
        ws = Workspace.open(sys.argv[1])
        run = ws.runs.start("crash")
        print(run.id, flush=True)
        for i in range(20_000):
            run.log_metric("loss", 1 / (i + 1), step=i)
        run.log_params({"lr": 0.1})
        raise RuntimeError("the training script crashed")
        """,
    )
    assert process.returncode == 1
    run_id = process.stdout.read().strip()  # type: ignore[union-attr]
    with Workspace.open(home) as ws:
        history = ws.runs.metric_history(run_id, "loss")
        assert len(history) == 20_000 and history[-1].step == 19_999
        assert ws.runs.get(run_id).params == {"lr": "0.1"}


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_end_the_run_as_killed_with_every_value_stored(tmp_path: Path, how: str) -> None:
    home = tmp_path / "ws"
    process = run_script(
        home,
        """
        import signal
        # As in a terminal: a background job of a shell (`make test &`, nohup) starts with SIGINT ignored.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ws = Workspace.open(sys.argv[1])
        logged = 0
        try:
            with ws.runs.start("stop") as run:
                print(run.id, flush=True)
                while True:
                    run.log_metric("x", float(logged), step=logged)
                    logged += 1
                    if logged % 1000 == 0:
                        time.sleep(0.001)
        finally:
            print(logged, flush=True)
        """,
        wait=False,
    )
    assert process.stdout is not None
    run_id = process.stdout.readline().strip()
    with Workspace.open(home) as ws:
        wait_until(lambda: len(ws.runs.metric_history(run_id, "x")) > 5000 if _has_metric(ws, run_id) else False)
    process.send_signal(signal.SIGTERM if how == "SIGTERM" else signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # where it hangs: faulthandler (PYTHONFAULTHANDLER) dumps every thread
        process.send_signal(signal.SIGABRT)
        out, err = process.communicate(timeout=30)
        pytest.fail(f"the script did not end within 60 s of {how}; its threads:\n{err[-8000:]}")
    finally:
        if process.poll() is None:  # never leave it logging for nobody
            process.kill()
            process.wait()
    logged = int(out.strip())
    assert process.returncode == (143 if how == "SIGTERM" else -signal.SIGINT), err
    with Workspace.open(home) as ws:
        run = ws.runs.get(run_id)
        assert run.status == "killed"
        stored = len(ws.runs.metric_history(run_id, "x"))
        # the signal may land between a log_metric call returning and the script counting it
        assert stored in (logged, logged + 1)
        assert run.metrics == {"x": float(stored - 1)}, "every value up to the last is there"


def _has_metric(ws: Workspace, run_id: str) -> bool:
    return "x" in ws.runs.get(run_id).metrics


def test_a_conflicting_parameter_from_another_process_is_raised_not_dropped(workspace) -> None:  # type: ignore[no-untyped-def]
    with workspace.runs.start("conflict") as first:
        first.log_param("lr", 0.1)
    with Workspace.open(workspace.settings.home) as other:
        # another process (here another workspace object) resumes logging to the same run
        from conveyor.tracking import ActiveRun

        again = ActiveRun(other.runs, first.id, "conflict")
        again.log_param("lr", 0.2)  # this object never saw lr=0.1: the store refuses it when writing
        with pytest.raises(Conflict, match="already '0.1'"):
            again.end()
        assert other.runs.get(first.id).status == "failed"
        assert "were not stored" in (other.runs.get(first.id).error or "")


def test_values_the_store_refuses_are_reported_not_dropped(any_workspace, capfd) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    ws = any_workspace
    run = ws.runs.start("gone")
    with ws.store.write() as session:  # someone deletes the run while it is logging
        session.execute(sa.text("DELETE FROM runs WHERE id = :id"), {"id": run.id})
    run.log_metric("m", 1.0)
    with pytest.raises(ConveyorError, match="1 logged values could not be stored: .*(FOREIGN KEY|foreign key)"):
        run.flush()
    run.log_metric("m", 2.0)
    ws.runs.close()  # at exit: reported on stderr with the count
    assert "conveyor: tracking: 1 logged values could not be stored" in capfd.readouterr().err


def test_many_threads_logging_at_once(workspace) -> None:  # type: ignore[no-untyped-def]
    with workspace.runs.start("threads") as run:

        def log(worker: int) -> None:
            for i in range(2000):
                run.log_metric(f"w{worker}", float(i), step=i)

        threads = [threading.Thread(target=log, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    r = workspace.runs.get(run.id)
    assert r.metrics == {f"w{w}": 1999.0 for w in range(4)}
    assert all(len(workspace.runs.metric_history(run.id, f"w{w}")) == 2000 for w in range(4))
