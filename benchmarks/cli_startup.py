"""How fast the command line answers: ``conveyor --help``, ``--version``, ``runs list`` and ``models list`` on a
workspace with 200 runs and 5 registered models (2 versions each), beside ``mlflow --help``, ``mlflow --version``
and ``mlflow runs list`` on the same 200 runs in MLflow's SQLite store (MLflow's CLI has no command that lists
registered models).

Every command runs in a fresh process, SAMPLES times after one warm-up run, the two tools taking turns; the
figure is the median wall time, with the processes' CPU time beside it (on a shared machine the wall time also
counts the waits for a core). Targets (issue 14): ``--help`` and ``--version`` at most 150 ms, ``runs list`` and
``models list`` at most 400 ms.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path

from benchmarks._harness import (
    BENCH_DIR,
    Context,
    Result,
    Side,
    ensure_peer_environment,
    peer_versions,
    print_table,
    save,
)

SAMPLES = 10
SRC = Path(__file__).resolve().parents[1] / "src"
RUNS = 200
MODELS, VERSIONS = 5, 2
TARGET_MS = {"--help": 150.0, "--version": 150.0, "runs list": 400.0, "models list": 400.0}


def _fill(home: Path) -> None:
    """A workspace made by ``init``, with RUNS finished runs (the tracking benchmarks' generator) and models."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from benchmarks._tracking_side import populate
    from conveyor import Workspace

    ws, _ = Workspace.init(home)
    with ws:
        populate(ws, RUNS)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(200, 3))
        model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
        for i in range(MODELS * VERSIONS):
            ws.models.register(f"model-{i % MODELS}", model)
        ws.models.set_alias("model-0", "champion", 1)


def _mlflow_store(ctx: Context, work: Path) -> str:
    """The same RUNS runs in MLflow's SQLite store; returns the experiment's id."""
    done = subprocess.run(
        [str(ctx.peer_python()), str(BENCH_DIR / "peers" / "mlflow_tracking.py"), "populate", str(work), str(RUNS)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return str(json.loads(done.stdout.strip().splitlines()[-1])["experiment_id"])


def _once(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run ``command`` to completion: (wall ms, CPU ms of the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env, cwd=cwd, timeout=120, check=False)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


Samples = dict[str, dict[str, tuple[list[float], list[float]]]]


def _measure(
    pairs: dict[str, tuple[list[str], list[str] | None]], envs: tuple[dict[str, str], dict[str, str]], cwd: Path
) -> Samples:
    """Each command's samples, the two tools in turn: {label: {"conveyor"|"mlflow": ([wall ms], [CPU ms])}}."""
    samples: Samples = {}
    for label, (ours, theirs) in pairs.items():
        sides = {"conveyor": (ours, envs[0])} | ({"mlflow": (theirs, envs[1])} if theirs else {})
        for command, env in sides.values():
            _once(command, env, cwd)  # warm-up: bytecode caches, the page cache
        found = samples.setdefault(label, {})
        for _ in range(SAMPLES):
            for side, (command, env) in sides.items():
                wall, cpu = _once(command, env, cwd)
                walls, cpus = found.setdefault(side, ([], []))
                walls.append(wall)
                cpus.append(cpu)
    return samples


def run(ctx: Context) -> Result:
    from conveyor import __version__

    ensure_peer_environment()
    home = ctx.work / "ws"
    _fill(home)
    experiment = _mlflow_store(ctx, ctx.work / "mlflow")
    conveyor, mlflow = str(ctx.conveyor_bin()), str(ctx.peer_bin("mlflow"))
    pairs: dict[str, tuple[list[str], list[str] | None]] = {
        "--help": ([conveyor, "--help"], [mlflow, "--help"]),
        "--version": ([conveyor, "--version"], [mlflow, "--version"]),
        "runs list": (
            [conveyor, "--home", str(home), "runs", "list"],
            [mlflow, "runs", "list", "--experiment-id", experiment],
        ),
        "models list": ([conveyor, "--home", str(home), "models", "list"], None),
    }
    tracking_uri = f"sqlite:///{ctx.work / 'mlflow' / 'mlflow.db'}"
    # Bytecode as an installed package has it: pip compiles what it installs (MLflow's side), while an editable
    # Conveyor under PYTHONDONTWRITEBYTECODE would recompile ~30 of its modules on every sample (30-45 ms).
    python = str(ctx.conveyor_bin().parent / "python")
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(SRC)], check=True)
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONVEYOR_", "MLFLOW_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    envs = ({**base, "COLUMNS": "120"}, {**base, "COLUMNS": "120", "MLFLOW_TRACKING_URI": tracking_uri})
    load_before = os.getloadavg()
    samples = _measure(pairs, envs, ctx.work)
    load_after = os.getloadavg()
    mlflow_version = peer_versions(["mlflow"])["mlflow"]

    notes = [
        f"{SAMPLES} runs of each command after a warm-up, Conveyor and MLflow taking turns; {RUNS} runs in each "
        f"tool's SQLite store, {MODELS} models × {VERSIONS} versions in Conveyor's.",
        f"Load average (1 min) {load_before[0]:.1f} before and {load_after[0]:.1f} after on {os.cpu_count()} cores: "
        "the machine is shared, so the wall times count waits for a core; the CPU times beside them do not.",
    ]
    results = []
    for label, found in samples.items():
        walls, cpus = found["conveyor"]
        ours = Side(
            f"conveyor {label}",
            walls,
            "ms",
            {"CPU time (median)": f"{statistics.median(cpus):.0f} ms", "version": __version__},
        )
        peer = None
        if "mlflow" in found:
            peer_walls, peer_cpus = found["mlflow"]
            peer = Side(
                f"mlflow {label} (MLflow {mlflow_version})",
                peer_walls,
                "ms",
                {"CPU time (median)": f"{statistics.median(peer_cpus):.0f} ms"},
            )
        target = TARGET_MS[label]
        name = "cli-startup" if label == "--help" else f"cli-startup-{label.strip('-').replace(' ', '-')}"
        results.append(
            Result(
                name=name,
                title=f"`conveyor {label}` (median of {SAMPLES}, fresh process)",
                conveyor=ours,
                peer=peer,
                better="lower",
                target=f"≤ {target:.0f} ms",
                met=statistics.median(walls) <= target,
                notes=notes,
            )
        )
    headline, others = results[0], results[1:]
    for result in others:
        save(result)  # the harness saves the returned headline; the rest are stored here
    print_table(others)
    return headline
