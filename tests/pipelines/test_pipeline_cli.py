"""The pipeline commands as a user types them, and a runner killed mid-run then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from conveyor import Workspace
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_run_runs_show_logs(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    assert cli("--home", home, "init").code == 0
    ran = cli("--home", home, "pipeline", "run", "tests.pipelines.steps:numbers", "--param", "n=3", "--json")
    assert ran.code == 0, ran.err
    run = ran.json
    assert run["status"] == "succeeded" and run["params"] == {"n": 3}
    assert [s["status"] for s in run["steps"]] == ["succeeded"] * 3
    listed = cli("--home", home, "pipeline", "runs", "--json").json
    assert [r["id"] for r in listed["runs"]] == [run["id"]]
    shown = cli("--home", home, "pipeline", "show", run["id"])
    assert "make_numbers" in shown.out and "succeeded" in shown.out
    logs = cli("--home", home, "pipeline", "logs", run["id"], "make_numbers", "--json").json
    assert "making 3 numbers" in logs["logs"]
    cached = cli("--home", home, "pipeline", "run", "tests.pipelines.steps:numbers", "--param", "n=3")
    assert cached.code == 0 and "↺ make_numbers  cached" in cached.out


def test_a_failed_run_exits_1_and_points_at_the_logs(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("--home", str(tmp_path / "ws"), "init").code == 0
    result = cli("--home", str(tmp_path / "ws"), "pipeline", "run", "tests.pipelines.steps:failing")
    assert result.code == 1
    assert "step 'explode' failed" in result.err
    assert "conveyor pipeline logs" in result.out


def test_bad_input_exits_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    assert cli("--home", home, "init").code == 0
    unknown = cli("--home", home, "pipeline", "run", "tests.pipelines.steps:numbers", "--param", "m=3")
    assert unknown.code == 2 and "has no parameter 'm'" in unknown.err
    assert cli("--home", home, "pipeline", "run", "tests.pipelines.steps:numbers", "--param", "n").code == 2
    assert cli("--home", home, "pipeline", "run", "tests.pipelines.steps:nothing").code == 2
    assert cli("--home", home, "pipeline", "run", "tests.pipelines.steps:numbers", "-e", "spark").code == 2
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nsteps:\n  - name: a\n    functon: m:f\n")
    applied = cli("--home", home, "apply", "-f", str(spec))
    assert applied.code == 2
    assert "line 4: unknown key 'functon'" in applied.err and "Did you mean 'function'" in applied.err


def test_a_killed_runner_is_resumed(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    gate = tmp_path / "gate"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "--home", str(home), "pipeline", "run", "tests.pipelines.steps:gated_wait",
         "--param", f"gate={gate}", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip
    with Workspace.open(home) as ws:

        def waiting() -> bool:
            runs = ws.pipelines.runs()
            return bool(runs) and runs[0].step("wait_for").status == "running"

        wait_until(waiting, timeout=60, what="the runner to start the blocking step")
        run_id = ws.pipelines.runs()[0].id
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        crashed = ws.pipelines.get_run(run_id)  # the read finds the runner gone
        assert crashed.status == "crashed" and "The runner process" in (crashed.error or "")
        assert crashed.step("make_numbers").status == "succeeded" and crashed.step("wait_for").status == "crashed"
        assert [a.name for a in ws.data.list()] == ["gated-wait.make_numbers"]
        gate.write_text("open")
    resumed = subprocess.run(
        [sys.executable, "-m", "conveyor", "--home", str(home), "pipeline", "resume", run_id, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    run = json.loads(resumed.stdout)
    assert run["id"] == run_id and run["status"] == "succeeded"
    assert {s["name"]: s["outputs"].get("value") for s in run["steps"]}["wait_for"] == 3
