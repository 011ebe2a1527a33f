"""The Dask executor: steps as tasks on a Dask distributed cluster (``dask://HOST:PORT``) or on a local
multi-process cluster it starts (``dask-local``).

A step runs in a worker thread; a step with a timeout runs in a child process of the worker, so the timeout
really stops it. Inside a step, ``current_step().dask_client()`` returns a client of the same cluster, so a
step can itself spread work over partitions. Workers open the same workspace as the runner: on a remote
cluster that means a PostgreSQL metadata URL and an object-store artifact URL they can reach.
"""

from __future__ import annotations

import contextlib
import pickle
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import BadInput, StoreUnavailable
from conveyor.pipelines._task import StepResult, StepTask, execute_task

__all__ = ["DaskExecutor"]

_CONNECT_TIMEOUT_S = 10


def run_on_worker(task: StepTask) -> StepResult:
    """The function Dask runs: the step in this thread, or in a child process when it has a timeout."""
    if task.timeout is None:
        return execute_task(task, capture="python")
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, "-c", "from conveyor.pipelines._dask import child_main; child_main()"],
            input=pickle.dumps(task),
            capture_output=True,
            timeout=task.timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        seconds = time.perf_counter() - started
        return StepResult(
            False, error=f"timed out after {seconds:.1f} s; its process was stopped", timed_out=True, user_error=True
        )
    if completed.returncode != 0 or not completed.stdout:
        tail = completed.stderr.decode(errors="replace")[-2000:]
        return StepResult(False, error=f"the step's process exited with status {completed.returncode}", traceback=tail)
    result: StepResult = pickle.loads(completed.stdout)  # noqa: S301 - our own child's output
    return result


def child_main() -> None:
    """A child process of a Dask worker: read a task on stdin, write its result on stdout."""
    task = pickle.loads(sys.stdin.buffer.read())  # noqa: S301 - written by our own worker
    result = execute_task(task, capture="fd")
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.flush()


@dataclass
class DaskExecutor:
    """Steps on a Dask cluster.

    Args:
        spec: ``dask-local`` (start a local cluster of ``workers`` processes) or ``dask://HOST:PORT``.
        workers: processes of the local cluster.
    """

    spec: str
    workers: int = 2
    name: str = field(init=False)
    _client: Any = field(default=None, init=False)
    _cluster: Any = field(default=None, init=False)
    _futures: dict[Any, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.name = self.spec

    @property
    def address(self) -> str:
        if self.spec.startswith("dask://"):
            return "tcp://" + self.spec.removeprefix("dask://")
        return self.spec

    @property
    def capacity(self) -> int:
        if self._client is None:
            return self.workers
        threads = sum(self._client.nthreads().values())
        return max(1, int(threads))

    def start(self) -> None:
        try:
            import distributed
        except ImportError as exc:
            raise BadInput("The Dask executor needs Dask: pip install 'conveyor-ml[dask]'.") from exc
        if self.spec == "dask-local":
            self._cluster = distributed.LocalCluster(
                n_workers=self.workers, threads_per_worker=1, processes=True, dashboard_address=None
            )
            self._client = distributed.Client(self._cluster)
            return
        try:
            self._client = distributed.Client(self.address, timeout=_CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise StoreUnavailable(
                f"Cannot reach the Dask scheduler at {self.spec} ({exc}). Start it (dask scheduler) or use "
                "--executor dask-local to start a local cluster.",
                executor=self.spec,
            ) from exc

    def submit(self, key: str, task: StepTask) -> None:
        assert self._client is not None, "start() first"
        future = self._client.submit(run_on_worker, task, key=f"conveyor-{key}-{uuid.uuid4().hex[:8]}", pure=False)
        self._futures[future] = key

    def poll(self, timeout: float) -> list[tuple[str, StepResult]]:
        if not self._futures:
            return []
        import distributed

        with contextlib.suppress(distributed.TimeoutError, TimeoutError):
            distributed.wait(list(self._futures), timeout=timeout, return_when="FIRST_COMPLETED")
        finished: list[tuple[str, StepResult]] = []
        for future in [f for f in self._futures if f.done()]:
            key = self._futures.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker lost or killed: the platform's failure
                result = StepResult(False, error=f"the Dask task failed: {type(exc).__name__}: {exc}")
            finished.append((key, result))
        return finished

    def client(self) -> Any:
        return self._client

    def close(self) -> None:
        for future in list(self._futures):
            with contextlib.suppress(Exception):
                future.cancel()
        self._futures.clear()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()
        self._client = self._cluster = None
