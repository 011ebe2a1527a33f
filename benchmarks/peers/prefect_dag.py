"""The peer of Conveyor's orchestration-overhead benchmark: the same fan-out/fan-in DAG of no-op tasks in
Prefect 3, in its default local mode.

``python prefect_dag.py FANOUT`` (in the peers' environment, with ``PREFECT_HOME`` pointing at an empty
folder, ``DO_NOT_TRACK=1`` and ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` so nothing is sent out): no server
of our own; Prefect starts its ephemeral API on first use, with the default task runner (a thread pool) and
default logging. Prints one JSON line:

- ``import_s``: importing Prefect;
- ``warmup_s``: a first flow run of one task (the ephemeral server starts, the database is created, the
  engine warms up): the one-time start-up;
- ``dag_s``: wall time of calling the DAG's flow, warm: ``FANOUT`` independent tasks submitted with
  ``.map`` and one fan-in task that takes all their results, run to completion;
- ``spans``: each task's own ``[start, end]`` (``time.time()`` inside the function), fan-in last.
"""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()
from prefect import flow, task  # noqa: E402 - timed

import_s = time.perf_counter() - started


@task
def noop(i: int) -> list[float]:
    begun = time.time()
    return [begun, time.time()]


@task
def join(parts: list[list[float]]) -> list[list[float]]:
    begun = time.time()
    return [*parts, [begun, time.time()]]


@flow
def warmup() -> list[float]:
    return noop.submit(0).result()


@flow
def fan(n: int) -> list[list[float]]:
    futures = noop.map(range(n))
    return join.submit(futures).result()


def main(fanout: int) -> None:
    t0 = time.perf_counter()
    warmup()
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    spans = fan(fanout)
    dag_s = time.perf_counter() - t0
    assert len(spans) == fanout + 1
    print(json.dumps({"import_s": import_s, "warmup_s": warmup_s, "dag_s": dag_s, "spans": spans}))


if __name__ == "__main__":
    main(int(sys.argv[1]))
