"""Pipelines: orchestration overhead per step against Prefect 3, a fully cached re-run of the quickstart
pipeline, and a Dask step over 8 partitions on 2 workers against 1.

Three benchmarks, each a ``run_*(ctx) -> Result`` registered in ``benchmarks/__main__.py``:

- ``pipelines-overhead``: a fan-out/fan-in DAG of no-op steps (200 independent steps, then one step that
  takes all 200 results: 201 steps) on the local executor (2 worker processes), against the same DAG in
  Prefect 3 in its default local mode (ephemeral API, thread-pool task runner), in the peers' environment.
- ``pipelines-cached``: ``conveyor.quickstart.churn_pipeline`` run once cold in a fresh workspace, then again
  with every step cached: in-process (``ws.pipelines.run``) and as a CLI process.
- ``pipelines-dask``: one step that maps a CPU-bound pure-Python function over 8 partitions with
  ``current_step().dask()``, on ``DaskExecutor("dask-local", workers=2)`` against ``workers=1``.

Each measurement runs in a process of its own (``python -m benchmarks.pipelines COMMAND ...`` prints one
JSON line), in a fresh workspace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import BENCH_DIR, ROOT, Context, Result, Side, peer_versions

FANOUT = 200
STEPS = FANOUT + 1
OVERHEAD_TARGET_MS = 5.0
CACHED_TARGET_S = 1.0
DASK_TARGET = 1.7
DASK_PARTS = 8
DASK_PART_SECONDS = 2.5
QUICKSTART = "conveyor.quickstart:churn_pipeline"


def _python_json(args: list[str], *, python: str | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python ARGS`` from the repository's root and return the JSON object its last line prints.

    Raises:
        RuntimeError: the process failed (its stderr is quoted).
    """
    command = [python or sys.executable, *args]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v:.2f} ms" for v in values)


def _s(values: list[float]) -> str:
    return ", ".join(f"{v:.2f} s" for v in values)


# -- 1. orchestration overhead ---------------------------------------------------------------------------------


def overhead_per_step(dag_s: float, spans: list[list[float]]) -> tuple[float, float]:
    """(overhead per step, hand-off latency), both in ms, from a warm DAG run's wall time and each step's own
    ``[start, end]`` (the fan-in last).

    Overhead per step = (wall time of the run − the time spent inside the step functions) / steps.
    Hand-off latency = the fan-in's function start − the last fan-out function's end: how long the
    orchestrator takes to notice a result, record it, find the next step runnable and start it.
    """
    inside = sum(end - start for start, end in spans)
    per_step = (dag_s - inside) / len(spans) * 1000
    handoff = (spans[-1][0] - max(end for _, end in spans[:-1])) * 1000
    return per_step, handoff


def conveyor_dag(work: Path, fanout: int) -> dict[str, Any]:
    """One Conveyor sample (run in its own process): import, a fresh workspace, a warm-up run on the pool
    (the one-time start-up), then the timed DAG run on the same, now warm, pool."""
    started = time.perf_counter()
    from benchmarks._pipeline_steps import WarmPool, write_dag_module
    from conveyor import Workspace

    import_s = time.perf_counter() - started
    module = write_dag_module(work, fanout)
    started = time.perf_counter()
    ws, _ = Workspace.init(work / "home")
    init_s = time.perf_counter() - started
    pool = WarmPool()
    try:
        started = time.perf_counter()
        warm = ws.pipelines.run(module.warmup, executor=pool)
        warmup_s = time.perf_counter() - started
        assert warm.status == "succeeded", warm.error
        started = time.perf_counter()
        run = ws.pipelines.run(module.fan, executor=pool)
        dag_s = time.perf_counter() - started
    finally:
        pool.shutdown()
    assert run.status == "succeeded", run.error
    spans = [s.outputs["value"] for s in run.steps if s.name != "join"] + [run.step("join").outputs["value"]]
    assert len(spans) == fanout + 1
    return {
        "import_s": import_s,
        "init_s": init_s,
        "warmup_s": warmup_s,
        "dag_s": dag_s,
        "workers": pool.workers,
        "spans": spans,
    }


def run_overhead(ctx: Context) -> Result:
    from conveyor import __version__

    versions = peer_versions(["prefect"])
    conveyor: dict[str, list[float]] = {
        "per_step": [],
        "handoff": [],
        "dag": [],
        "warmup": [],
        "import": [],
        "init": [],
    }
    prefect: dict[str, list[float]] = {"per_step": [], "handoff": [], "dag": [], "warmup": [], "import": []}
    workers = 0
    for i in range(ctx.repeat):
        work = ctx.work / f"conveyor-{i}"
        shutil.rmtree(work, ignore_errors=True)
        out = _python_json(["-m", "benchmarks.pipelines", "conveyor-dag", str(work), str(FANOUT)])
        workers = out["workers"]
        per_step, handoff = overhead_per_step(out["dag_s"], out["spans"])
        for key, value in (("per_step", per_step), ("handoff", handoff), ("dag", out["dag_s"])):
            conveyor[key].append(value)
        conveyor["warmup"].append(out["warmup_s"])
        conveyor["import"].append(out["import_s"])
        conveyor["init"].append(out["init_s"])

        home = ctx.work / f"prefect-{i}"
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        out = _python_json(
            [str(BENCH_DIR / "peers" / "prefect_dag.py"), str(FANOUT)],
            python=str(ctx.peer_python()),
            env={
                "PREFECT_HOME": str(home),
                "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                # Its default (20 s) is barely above what starting the ephemeral server takes on this machine.
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            },
        )
        per_step, handoff = overhead_per_step(out["dag_s"], out["spans"])
        for key, value in (("per_step", per_step), ("handoff", handoff), ("dag", out["dag_s"])):
            prefect[key].append(value)
        prefect["warmup"].append(out["warmup_s"])
        prefect["import"].append(out["import_s"])

    conveyor_side = Side(
        f"Conveyor (local executor, {workers} worker processes)",
        conveyor["per_step"],
        "ms",
        {
            "version": __version__,
            f"wall time of the warm {STEPS}-step run": _s(conveyor["dag"]),
            "hand-off latency (last fan-out step's end → fan-in step's start)": _ms(conveyor["handoff"]),
            "one-time start-up (forkserver + worker processes, each opening the workspace; a 2-step warm-up run)": _s(
                conveyor["warmup"]
            ),
            "create the workspace (database and migrations; Prefect's is inside its warm-up)": _s(conveyor["init"]),
            "import conveyor": _s(conveyor["import"]),
        },
    )
    prefect_side = Side(
        f"Prefect {versions['prefect']} (default: ephemeral API, thread-pool task runner)",
        prefect["per_step"],
        "ms",
        {
            f"wall time of the warm {STEPS}-task flow run": _s(prefect["dag"]),
            "hand-off latency (last fan-out task's end → fan-in task's start)": _ms(prefect["handoff"]),
            "one-time start-up (ephemeral API server and database; a 1-task warm-up flow run)": _s(prefect["warmup"]),
            "import prefect": _s(prefect["import"]),
        },
    )
    return Result(
        name="pipelines-overhead",
        title=f"Pipeline orchestration overhead per step ({FANOUT}-way fan-out + fan-in, no-op steps)",
        conveyor=conveyor_side,
        peer=prefect_side,
        better="lower",
        target=f"≤ {OVERHEAD_TARGET_MS:.0f} ms per step",
        met=conveyor_side.median <= OVERHEAD_TARGET_MS,
        notes=[
            f"The DAG: {FANOUT} independent no-op steps (each takes a literal and returns its own start and end "
            f"time), then one step that takes all {FANOUT} results: {STEPS} steps. Conveyor: `@step` functions "
            f"and a `@pipeline`, `ws.pipelines.run` on the local executor ({workers} worker processes, one per "
            "core), default settings (cache lookups included, every step's state committed to SQLite). Prefect: "
            "`@task`s mapped with `.map` and the fan-in `.submit`ted with the list of futures, in a `@flow`, "
            "default local mode (no server of ours; PREFECT_HOME in a fresh folder per sample; telemetry off; "
            "the ephemeral server's start-up timeout raised from 20 s to 120 s, as starting it takes 10–18 s "
            "here and sometimes timed out).",
            "Overhead per step = (wall time of the whole DAG run − time spent inside the step functions) / "
            f"{STEPS}, the same for both, measured in-process around the call that runs the DAG (Conveyor: "
            "`ws.pipelines.run`, which also reads the finished run back; Prefect: calling the flow). The "
            "functions' time is measured inside them (microseconds here). Samples: one per process, median "
            f"of {ctx.repeat}, sides alternating, each in a fresh workspace / Prefect home.",
            "One-time start-up is excluded from the per-step figure and reported separately: each side first "
            "runs a tiny warm-up (Conveyor: a 2-step pipeline on a worker pool that is then kept for the timed "
            "run; Prefect: a 1-task flow, which starts its ephemeral API server). A plain cold "
            "`conveyor pipeline run` pays its start-up on every run; Prefect's ephemeral server is per process.",
            "Not the same work per step: Conveyor runs each step in a separate worker process and commits its "
            "state to the metadata store before the next one starts; Prefect's default runs tasks on threads "
            "of the flow's process and records task states asynchronously (events to its API).",
        ],
    )


# -- 2. a fully cached re-run of the quickstart pipeline ------------------------------------------------------------


def cached_cold(home: Path) -> dict[str, Any]:
    """In its own process: run the quickstart pipeline cold in a fresh workspace, then again (all cached)."""
    from conveyor import Workspace
    from conveyor.quickstart import churn_pipeline

    ws, _ = Workspace.init(home)
    started = time.perf_counter()
    cold = ws.pipelines.run(churn_pipeline)
    cold_s = time.perf_counter() - started
    assert cold.status == "succeeded", cold.error
    started = time.perf_counter()
    again = ws.pipelines.run(churn_pipeline)
    again_s = time.perf_counter() - started
    assert [s.status for s in again.steps] == ["cached"] * len(again.steps), [s.status for s in again.steps]
    return {"cold_s": cold_s, "same_process_s": again_s, "steps": [s.name for s in cold.steps]}


def cached_fresh(home: Path) -> dict[str, Any]:
    """In a new process: open the workspace, then time the fully cached run (``ws.pipelines.run`` only)."""
    started = time.perf_counter()
    from conveyor import Workspace
    from conveyor.quickstart import churn_pipeline

    ws = Workspace.open(home)
    ready_s = time.perf_counter() - started
    started = time.perf_counter()
    run = ws.pipelines.run(churn_pipeline)
    run_s = time.perf_counter() - started
    assert [s.status for s in run.steps] == ["cached"] * len(run.steps), [s.status for s in run.steps]
    return {"import_and_open_s": ready_s, "run_s": run_s}


def run_cached(ctx: Context) -> Result:
    from conveyor import __version__

    fresh: list[float] = []
    same: list[float] = []
    ready: list[float] = []
    cli: list[float] = []
    cold: list[float] = []
    steps: list[str] = []
    for i in range(ctx.repeat):
        home = ctx.work / f"conveyor-{i}"
        shutil.rmtree(home, ignore_errors=True)
        out = _python_json(["-m", "benchmarks.pipelines", "cached-cold", str(home)])
        cold.append(out["cold_s"])
        same.append(out["same_process_s"])
        steps = out["steps"]
        out = _python_json(["-m", "benchmarks.pipelines", "cached-fresh", str(home)])
        fresh.append(out["run_s"])
        ready.append(out["import_and_open_s"])
        started = time.perf_counter()
        done = subprocess.run(
            [str(ctx.conveyor_bin()), "--home", str(home), "pipeline", "run", QUICKSTART, "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        cli.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"conveyor pipeline run failed ({done.returncode}):\n{done.stderr[-3000:]}")
        statuses = [s["status"] for s in json.loads(done.stdout)["steps"]]
        assert statuses == ["cached"] * len(statuses), statuses

    conveyor = Side(
        "Conveyor (in-process `ws.pipelines.run`, new process)",
        fresh,
        "s",
        {
            "version": __version__,
            "the same call in the process that ran it cold, right after": _s(same),
            "`conveyor pipeline run conveyor.quickstart:churn_pipeline` (whole CLI process, timed from outside)": _s(
                cli
            ),
            "import conveyor + open the workspace (before the timed call)": _s(ready),
            "the cold first run (in-process)": _s(cold),
        },
    )
    return Result(
        name="pipelines-cached",
        title=f"Fully cached re-run of the quickstart pipeline ({len(steps)} steps)",
        conveyor=conveyor,
        peer=None,
        better="lower",
        target=f"≤ {CACHED_TARGET_S:.0f} s in-process",
        met=conveyor.median <= CACHED_TARGET_S,
        notes=[
            f"`{QUICKSTART}` ({' → '.join(steps)}) with its default parameters: run once cold in a fresh "
            "workspace, then again with every step answered from the cache (checked: every step `cached`).",
            "The target applies to the in-process figure: a new Python process imports Conveyor and opens the "
            "workspace (untimed), then `ws.pipelines.run(churn_pipeline)` is timed end to end (definition, "
            "run and step records, cache lookups, reading the run back). Also shown: the same call in the "
            "process that made the cold run, and the whole CLI process (interpreter start, imports, output) "
            "timed from outside.",
            f"Median of {ctx.repeat} fresh workspaces.",
        ],
    )


# -- 3. Dask: 2 workers against 1 -------------------------------------------------------------------------------


def dask_sample(home: Path, workers: int, parts: int, rounds: int) -> dict[str, Any]:
    """In its own process: the partitions pipeline on a fresh ``dask-local`` cluster of ``workers``."""
    from benchmarks._pipeline_steps import partitions
    from conveyor import Workspace
    from conveyor.pipelines._dask import DaskExecutor

    ws, _ = Workspace.init(home)
    started = time.perf_counter()
    run = ws.pipelines.run(
        partitions, params={"parts": parts, "rounds": rounds}, executor=DaskExecutor("dask-local", workers=workers)
    )
    run_s = time.perf_counter() - started
    assert run.status == "succeeded", run.error
    spread = run.step("spread")
    return {
        "run_s": run_s,
        "step_s": spread.seconds,
        "map_s": spread.outputs["value"]["map_seconds"],
        "checksum": spread.outputs["value"]["checksum"],
    }


def run_dask(ctx: Context) -> Result:
    from benchmarks._pipeline_steps import calibrate
    from conveyor import __version__

    rounds = calibrate(DASK_PART_SECONDS)
    step: dict[int, list[float]] = {1: [], 2: []}
    mapped: dict[int, list[float]] = {1: [], 2: []}
    whole: dict[int, list[float]] = {1: [], 2: []}
    checksums = set()
    for i in range(ctx.repeat):
        for workers in (1, 2):
            home = ctx.work / f"conveyor-{workers}w-{i}"
            shutil.rmtree(home, ignore_errors=True)
            out = _python_json(
                ["-m", "benchmarks.pipelines", "dask", str(home), str(workers), str(DASK_PARTS), str(rounds)]
            )
            step[workers].append(out["step_s"])
            mapped[workers].append(out["map_s"])
            whole[workers].append(out["run_s"])
            checksums.add(out["checksum"])
    assert len(checksums) == 1, "every run computes the same result"

    def side(workers: int) -> Side:
        return Side(
            f"Conveyor, dask-local, {workers} worker{'s' if workers > 1 else ''}",
            step[workers],
            "s",
            {
                "the map inside the step (client.map + gather)": _s(mapped[workers]),
                "whole `ws.pipelines.run` (cluster start and stop included)": _s(whole[workers]),
                **({"version": __version__} if workers == 2 else {}),
            },
        )

    two, one = side(2), side(1)
    speedup = one.median / two.median
    return Result(
        name="pipelines-dask",
        title=f"Dask: a CPU-bound step over {DASK_PARTS} partitions, 2 workers against 1",
        conveyor=two,
        peer=one,
        better="lower",
        target=f"≥ {DASK_TARGET}× faster on 2 workers",
        met=speedup >= DASK_TARGET,
        notes=[
            f"Speed-up (the ratio column): {speedup:.2f}× (median step time on 1 worker / on 2 workers); per "
            "repeat: "
            + ", ".join(f"{a / b:.2f}×" for a, b in zip(step[1], step[2], strict=True))
            + ". The 'peer' here is Conveyor itself on a 1-worker cluster.",
            f"One step uses `current_step().dask()` to map a CPU-bound pure-Python function (a loop holding the "
            f"GIL) over {DASK_PARTS} partitions of about {DASK_PART_SECONDS} s each on one core ({rounds:,} "
            "rounds, calibrated at the start of the benchmark), on `DaskExecutor('dask-local', workers=N)` (N "
            "processes, 1 thread each; the step's own thread steps aside while it waits). Step time = the step "
            "run's recorded start to end (submission to the cluster until its result was recorded).",
            f"Each run in a new process and a fresh workspace; median of {ctx.repeat}, 1 and 2 workers "
            f"alternating. The machine has {os.cpu_count()} cores, so 2× is the ceiling; the runner, scheduler "
            "and workers share them.",
        ],
    )


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "conveyor-dag":
        print(json.dumps(conveyor_dag(Path(rest[0]), int(rest[1]))))
    elif command == "cached-cold":
        print(json.dumps(cached_cold(Path(rest[0]))))
    elif command == "cached-fresh":
        print(json.dumps(cached_fresh(Path(rest[0]))))
    elif command == "dask":
        print(json.dumps(dask_sample(Path(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]))))
    else:
        raise SystemExit(f"unknown command {command!r}")
