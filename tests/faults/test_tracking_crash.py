"""A tracked run whose process is SIGKILLed is marked ``crashed`` by the next read, with the last stored step."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from conveyor import Workspace
from tests.conftest import wait_until
from tests.faults._chaos import LONG, cli_json, sigkill, start_script

pytestmark = pytest.mark.chaos

LOGGING_LOOP = """
ws = Workspace.open(sys.argv[1])
run = ws.runs.start("chaos", name="loop")
print(run.id, flush=True)
step = 0
while True:
    run.log_metrics({"loss": 1 / (step + 1), "acc": step / (step + 1)}, step=step)
    step += 1
    if step % 100 == 0:
        time.sleep(0.002)
"""


def _stored_steps(ws: Workspace, run_id: str) -> int:
    run = ws.runs.get(run_id)
    return len(ws.runs.metric_history(run_id, "loss")) if "loss" in run.metrics else 0


@pytest.mark.parametrize("kills", [10 if LONG else 1])
def test_a_sigkilled_run_is_crashed_at_the_next_read_with_its_last_stored_step(tmp_path: Path, kills: int) -> None:
    home = tmp_path / "ws"
    rng = random.Random(15)
    for _ in range(kills):
        process = start_script(LOGGING_LOOP, str(home))
        assert process.stdout is not None
        run_id = process.stdout.readline().strip()
        with Workspace.open(home) as ws:
            wait_until(lambda: _stored_steps(ws, run_id) > 500, what="the loop to store values")  # noqa: B023
            assert ws.runs.get(run_id).status == "running", "a live process's run is running"
        time.sleep(rng.uniform(0, 1.5) if LONG else 0)
        sigkill(process)
        killed_at = time.monotonic()

        shown = cli_json("--home", str(home), "runs", "show", run_id)
        seconds = time.monotonic() - killed_at
        assert isinstance(shown, dict)
        assert shown["status"] == "crashed", shown
        assert shown["ended_at"] is not None
        assert "is gone: it no longer runs" in shown["error"] and "may be lost" in shown["error"]
        with Workspace.open(home) as ws:
            history = ws.runs.metric_history(run_id, "loss")
            last = max(p.step for p in history)
            assert f"reach step {last}," in shown["error"], "the message names the last stored step"
            assert ws.runs.get(run_id).metrics["loss"] == pytest.approx(1 / (last + 1))
        listed = cli_json("--home", str(home), "runs", "list")
        assert isinstance(listed, dict)
        assert {r["id"]: r["status"] for r in listed["runs"]}[run_id] == "crashed"
        print(f"crashed shown {seconds:.2f} s after the SIGKILL (a CLI process's start included)")
