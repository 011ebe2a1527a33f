"""Steps and pipelines the pipelines benchmarks run (an importable module, as a user's project would have).

- the fan-out/fan-in DAG of no-op steps is *generated* (:func:`write_dag_module`): its fan-in step takes one
  named argument per fan-out step, which only a generated function can declare;
- the Dask step maps a CPU-bound pure-Python function over partitions with ``current_step().dask()``.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from conveyor.pipelines import LocalExecutor, current_step, pipeline, step

# -- the overhead DAG ------------------------------------------------------------------------------------------


def write_dag_module(folder: Path, fanout: int) -> ModuleType:
    """Write and import ``bench_dag_N``: ``noop`` (returns its own ``[start, end]`` wall-clock span) called
    ``fanout`` times with a literal argument, then ``join`` taking every result; and ``warmup``, two
    independent steps of another function (one per worker of a 2-process pool)."""
    name = f"bench_dag_{fanout}"
    args = ", ".join(f"x{i}: list" for i in range(fanout))
    lines = [
        f'"""{fanout} independent no-op steps, then one step that takes all their results."""',
        "",
        "import time",
        "",
        "from conveyor.pipelines import pipeline, step",
        "",
        "",
        "@step",
        "def noop(i: int) -> list:",
        "    begun = time.time()",
        "    return [begun, time.time()]",
        "",
        "",
        "@step",
        f"def join({args}) -> list:",
        "    begun = time.time()",
        "    return [begun, time.time()]",
        "",
        "",
        "@step",
        "def warm(i: int) -> int:",
        "    return i",
        "",
        "",
        "@pipeline",
        "def fan():",
        f"    join(*[noop(i) for i in range({fanout})])",
        "",
        "",
        "@pipeline",
        "def warmup():",
        "    warm(0)",
        "    warm(1)",
        "",
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text("\n".join(lines))
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(name)


class WarmPool(LocalExecutor):
    """A local executor whose worker processes outlive one run, so the one-time start-up (the forkserver,
    the workers, each worker opening the workspace) is paid by a warm-up run before the timed one.
    ``shutdown()`` stops it."""

    def start(self) -> None:
        if self._context is None:
            super().start()

    def close(self) -> None:
        """Kept running between runs."""

    def shutdown(self) -> None:
        super().close()


# -- the Dask step ---------------------------------------------------------------------------------------------


def burn(part: int, rounds: int) -> int:
    """CPU-bound pure Python (holds the GIL throughout): ``rounds`` steps of a linear congruential generator."""
    x = part + 1
    for _ in range(rounds):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
    return x


def calibrate(seconds: float) -> int:
    """How many rounds of :func:`burn` take about ``seconds`` on one core of this machine."""
    rounds = 200_000
    started = time.perf_counter()
    burn(0, rounds)
    per_round = (time.perf_counter() - started) / rounds
    return max(1, int(seconds / per_round))


@step(cache=False)
def spread(parts: int = 8, rounds: int = 1_000_000) -> dict[str, Any]:
    """Map :func:`burn` over ``parts`` partitions on the cluster the step runs on; return a checksum and the
    seconds the map took."""
    with current_step().dask() as client:
        started = time.perf_counter()
        values = client.gather(client.map(burn, range(parts), [rounds] * parts, pure=False))
        seconds = time.perf_counter() - started
    return {"checksum": sum(values) % 1_000_003, "map_seconds": seconds}


@pipeline(name="dask-partitions")
def partitions(parts: int = 8, rounds: int = 1_000_000) -> None:
    spread(parts, rounds)
