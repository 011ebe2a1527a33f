"""Sweeps: the user's function or script over a search space, each trial a process and a child run."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from conveyor.errors import BadInput, InvalidSpec, NotFound

FUNCTION = """
import time

def fit(params, trial):
    # a quadratic with its best at lr=0.3, depth=4; "epochs" report a value that converges to it
    final = -((params["lr"] - 0.3) ** 2) - 0.01 * (params["depth"] - 4) ** 2 + (0.1 if params["kind"] == "b" else 0.0)
    for epoch in range(5):
        trial.report(final - (5 - epoch) * 0.05, step=epoch)
        time.sleep(0.1)  # time for the parent to prune it mid-run, even on 2 busy cores
    return {"score": final, "other": 1.0}
"""

SCRIPT = """
import argparse
from conveyor.train import report

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
parser.add_argument("--mode")
args = parser.parse_args()
if args.mode == "boom":
    raise SystemExit("the script refused mode boom")
print("training with", args.x)
for step in range(3):
    report((args.x - 2) ** 2 + 1 / (step + 1), step=step)
report((args.x - 2) ** 2)
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, "mytrain.py", FUNCTION)
    write(tmp_path, "script.py", SCRIPT)
    write(tmp_path, "slow.py", "import time\ntime.sleep(60)\n")
    return tmp_path


def test_a_function_sweep_finds_the_best_region_and_tracks_every_trial(workspace, project: Path) -> None:  # type: ignore[no-untyped-def]
    spec = write(
        project,
        "sweep.yaml",
        """
        experiment: quad
        function: mytrain:fit
        metric: score
        goal: maximize
        sampler: tpe
        seed: 3
        space:
          lr: {type: loguniform, low: 0.01, high: 1.0}
          depth: {type: int, low: 1, high: 8}
          kind: {type: choice, values: [a, b]}
        early_termination: {policy: median, warmup_steps: 1, startup_trials: 3}
        limits: {max_trials: 12, concurrency: 2}
        """,
    )
    result = workspace.train.sweep(spec)
    assert len(result.trials) == 12
    assert {t.state for t in result.trials} <= {"finished", "pruned"}
    assert result.best is not None and result.best.params["kind"] == "b"
    finished = [t for t in result.trials if t.state == "finished"]
    assert result.best.value == max(t.value for t in finished)  # type: ignore[type-var]
    parent = workspace.runs.get(result.run_id)
    assert parent.metrics["score"] == result.best.value and parent.tags["best_trial_run"] == result.best.run_id
    children = workspace.runs.search(f"parent_run_id = '{result.run_id}'", max_results=100).runs
    assert len(children) == 12
    best_run = workspace.runs.get(result.best.run_id)
    assert best_run.params["kind"] == "b" and best_run.status == "finished"
    history = workspace.runs.metric_history(result.best.run_id, "score")
    assert [m.step for m in history] == [0, 1, 2, 3, 4, 5], "epochs, then the final value"
    for trial in result.trials:
        if trial.state == "pruned":
            pruned = workspace.runs.get(trial.run_id)
            assert pruned.tags.get("pruned") == "true" and len(workspace.runs.metric_history(trial.run_id, "score")) < 5


def test_a_script_sweep_on_a_grid_with_a_failing_trial(cli, workspace, project: Path) -> None:  # type: ignore[no-untyped-def]
    spec = write(
        project,
        "grid.yaml",
        """
        script: script.py
        metric: loss
        goal: minimize
        sampler: grid
        space:
          x: {type: int, low: 0, high: 3}
          mode: {type: choice, values: [ok, boom]}
        limits: {max_trials: 100}
        """,
    )
    result = cli("--home", str(workspace.settings.home), "sweep", "-f", str(spec), "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["trials"] == 8, "the grid has 4 × 2 points; max_trials above it is capped"
    assert body["failed"] == 4
    assert body["best"]["params"] == {"x": 2, "mode": "ok"} and body["best"]["value"] == 0.0
    failed = [t for t in body["all_trials"] if t["state"] == "failed"]
    assert all("refused mode boom" in t["error"] for t in failed)
    run = workspace.runs.get(body["best"]["run_id"])
    assert b"training with 2" in workspace.runs.artifact_bytes(run.id, "trial.log")


def test_timeouts_stop_trials_for_real(workspace, project: Path) -> None:  # type: ignore[no-untyped-def]
    write(project, "sleepy.py", "import time\ndef fit(params, trial):\n    time.sleep(params['s'])\n    return 1.0\n")
    spec = write(
        project,
        "slow.yaml",
        """
        function: sleepy:fit
        metric: m
        space:
          s: {type: choice, values: [0.1, 30]}
        sampler: grid
        limits: {trial_timeout: 3, concurrency: 2}
        """,
    )
    result = workspace.train.sweep(spec)
    states = {t.params["s"]: t for t in result.trials}
    assert states[0.1].state == "finished"
    assert states[30].state == "killed" and "trial timeout" in (states[30].error or "")
    assert states[30].seconds < 10
    assert workspace.runs.get(states[30].run_id).status == "killed"


def test_no_trial_with_a_value_is_an_error(workspace, project: Path) -> None:  # type: ignore[no-untyped-def]
    spec = write(
        project,
        "bad.yaml",
        """
        script: script.py
        metric: loss
        space: {mode: {type: choice, values: [boom]}, x: {type: int, low: 0, high: 1}}
        sampler: grid
        """,
    )
    with pytest.raises(BadInput, match="refused mode boom"):
        workspace.train.sweep(spec)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("function: m:f\nmetric: a\nspace: {lr: {type: uniform, low: 1, high: 0.5}}", "low (1) must be below high"),
        ("function: m:f\nmetric: a\nspace: {lr: {type: loguniform, low: 0, high: 1}}", "must be above 0"),
        ("function: m:f\nmetric: a\nspace: {lr: {type: unifrom, low: 0, high: 1}}", "Did you mean one of: 'uniform'"),
        ("function: m:f\nmetric: a\nspace: {lr: {type: uniform, low: 0, hgh: 1}}", "Did you mean 'high'"),
        ("function: m:f\nmetric: a\nsampler: grid\nspace: {lr: {type: uniform, low: 0, high: 1}}", "grid sampler"),
        ("function: m:f\nmetric: a\nspace: {k: {type: choice, values: []}}", "non-empty list"),
        ("function: m:f\nmetrc: a\nspace: {k: {type: choice, values: [1]}}", "Did you mean 'metric'"),
        ("metric: a\nspace: {k: {type: choice, values: [1]}}", "exactly one of"),
        ("function: m:f\nmetric: a\nspace: {k: {type: choice, values: [1]}}\nlimits: {max_trial: 3}", "max_trials"),
        ("function: m:f\nmetric: a\nspace: {k: {type: int, low: 1, high: 5, step: 0}}", "step must be"),
        ("function: m:f\nmetric: a\nspace: {k: {type: choice, values: [1]}}\nlimits: {concurrency: 0}", "≥ 1"),
        ("script: nope.py\nmetric: a\nspace: {k: {type: choice, values: [1]}}", "does not exist"),
    ],
)
def test_bad_sweep_files_name_the_key(workspace, tmp_path: Path, body: str, message: str) -> None:  # type: ignore[no-untyped-def]
    spec = tmp_path / "s.yaml"
    spec.write_text(body)
    with pytest.raises(InvalidSpec, match=re.escape(message)):
        workspace.train.sweep(spec)


def test_cli_bad_sweep_is_exit_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = cli("--home", str(tmp_path / "ws"), "sweep", "-f", str(tmp_path / "none.yaml"), "--json")
    assert missing.code == 2 and "No sweep file" in json.loads(missing.out)["error"]["message"]
    with pytest.raises(NotFound):
        from conveyor.train import load_sweep

        load_sweep(tmp_path / "none.yaml")


def test_trials_on_a_dask_cluster_report_prune_and_stop(workspace, project: Path) -> None:  # type: ignore[no-untyped-def]
    write(
        project,
        "sleepy2.py",
        "import time\ndef fit(params, trial):\n    time.sleep(params['s'])\n    return params['s']\n",
    )
    spec = write(
        project,
        "dask.yaml",
        """
        function: sleepy2:fit
        metric: m
        goal: minimize
        sampler: grid
        space:
          s: {type: choice, values: [0.1, 0.3, 60]}
        limits: {trial_timeout: 5, concurrency: 2}
        executor: dask-local
        """,
    )
    result = workspace.train.sweep(spec)
    states = {t.params["s"]: t for t in result.trials}
    assert states[0.1].state == "finished" and states[0.3].state == "finished"
    assert result.best is not None and result.best.params == {"s": 0.1} and result.best.value == 0.1
    assert states[60].state == "killed" and states[60].seconds < 15
    funcs = write(project, "mytrain2.py", FUNCTION)
    assert funcs.exists()
    pruning = write(
        project,
        "dask-tpe.yaml",
        """
        function: mytrain2:fit
        metric: score
        seed: 3
        space:
          lr: {type: loguniform, low: 0.01, high: 1.0}
          depth: {type: int, low: 1, high: 8}
          kind: {type: choice, values: [a, b]}
        early_termination: {policy: median, warmup_steps: 1, startup_trials: 2}
        limits: {max_trials: 6, concurrency: 2}
        executor: dask-local
        """,
    )
    tpe = workspace.train.sweep(pruning)
    assert len(tpe.trials) == 6 and {t.state for t in tpe.trials} <= {"finished", "pruned"}
    history = workspace.runs.metric_history(tpe.best.run_id, "score")  # type: ignore[union-attr]
    assert [m.step for m in history] == [0, 1, 2, 3, 4, 5], "reports travel from the Dask worker to the run"
