"""Executors: where step attempts run. One contract, several implementations.

An executor accepts tasks (:meth:`Executor.submit`), reports finished ones (:meth:`Executor.poll`), and
enforces each task's timeout by stopping the process that runs it. The runner never waits on a single task,
so independent steps run side by side up to :attr:`Executor.capacity`.

- :class:`LocalExecutor`: a pool of worker processes on this machine (forked from a preloaded server, so a
  worker killed on timeout is replaced in milliseconds), started as tasks arrive (a run answered entirely from
  the cache starts none).
- ``DaskExecutor`` (``dask://HOST:PORT`` or ``dask-local``): see ``_dask.py``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol, runtime_checkable

from conveyor.errors import BadInput, Forbidden
from conveyor.pipelines._task import StepResult, StepTask

__all__ = ["Executor", "LocalExecutor", "make_executor", "max_local_workers"]


@runtime_checkable
class Executor(Protocol):
    """The contract every executor keeps (``tests/pipelines/test_executors.py`` checks each one)."""

    name: str

    @property
    def capacity(self) -> int:
        """How many tasks run at once."""
        ...

    def start(self) -> None:
        """Acquire workers; raises ``StoreUnavailable``/``BadInput`` when that is impossible."""
        ...

    def submit(self, key: str, task: StepTask) -> None:
        """Start ``task``; its result comes back from :meth:`poll` under ``key``."""
        ...

    def poll(self, timeout: float) -> list[tuple[str, StepResult]]:
        """Results finished within ``timeout`` seconds (timed-out tasks included, their process stopped)."""
        ...

    def close(self) -> None:
        """Stop the workers (running tasks are abandoned)."""
        ...


def _worker_main(conn: Connection) -> None:
    """A worker process: run tasks from the pipe until told to stop, or until the runner is gone."""
    from conveyor.pipelines._task import execute_task

    _exit_with_the_runner(conn)
    try:
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message is None:
                return
            key, task = message
            result = execute_task(task, capture="fd")
            try:
                conn.send((key, result))
            except (BrokenPipeError, OSError):
                return
    except KeyboardInterrupt:  # the runner is gone (see _exit_with_the_runner), or Ctrl+C
        return


#: How long a worker whose runner is gone lets its step unwind (``finally`` blocks) before it exits anyway.
_ORPHAN_GRACE_S = 5.0


def _exit_with_the_runner(conn: Connection) -> None:
    """End this worker when the runner's end of the pipe closes, even in the middle of a step.

    A runner that is SIGKILLed cannot stop its workers, and a worker notices the closed pipe only when it next
    reads or writes it: a long step would run on, and the forkserver (which each worker holds open) with it.
    A watching thread waits for the hang-up; the runner never writes while a step runs, so the pipe turns
    readable only when a task arrives on an idle worker (read by the loop) or the runner is gone. Then the
    step is interrupted with SIGINT (a ``KeyboardInterrupt`` is not recorded as the step's failure) and the
    process exits, after ``_ORPHAN_GRACE_S`` at the latest.
    """
    import signal
    import socket
    import threading

    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except OSError:  # not a socket (another platform's pipe): the worker ends at its next read or write
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def gone() -> bool:
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def watch() -> None:
        import select

        while True:
            readable: list[Any] = []
            with contextlib.suppress(InterruptedError):
                readable, _, _ = select.select([sock], [], [], 1.0)
                if readable and gone():
                    break
            if readable:
                time.sleep(0.5)  # a task waiting for the loop to read it: look again shortly
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(_ORPHAN_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="conveyor-runner-watch").start()


@dataclass
class _Worker:
    process: Any
    conn: Connection
    key: str | None = None
    deadline: float | None = None
    started: float = 0.0


@dataclass
class LocalExecutor:
    """A pool of worker processes on this machine.

    Args:
        workers: how many steps run at once (default: one per core).
    """

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    name: str = "local"
    _pool: list[_Worker] = field(default_factory=list, init=False)
    _queue: list[tuple[str, StepTask]] = field(default_factory=list, init=False)
    _context: Any = field(default=None, init=False)

    @property
    def capacity(self) -> int:
        return self.workers

    def start(self) -> None:
        if self.workers < 1:
            raise BadInput(f"A local executor needs at least one worker, not {self.workers}.")
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(["conveyor.pipelines._task", "pandas", "pyarrow.parquet"])
        self._pool = []  # workers start on demand, in _dispatch

    def _spawn(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_worker_main, args=(child,), daemon=True, name="conveyor-step")
        process.start()
        child.close()
        return _Worker(process, parent)

    def submit(self, key: str, task: StepTask) -> None:
        self._queue.append((key, task))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue:
            worker = next((w for w in self._pool if w.key is None), None)
            if worker is None:
                if len(self._pool) >= self.workers:
                    return
                worker = self._spawn()
                self._pool.append(worker)
            key, task = self._queue.pop(0)
            worker.key, worker.started = key, time.monotonic()
            worker.deadline = None if task.timeout is None else worker.started + task.timeout
            worker.conn.send((key, task))

    def poll(self, timeout: float) -> list[tuple[str, StepResult]]:
        busy = [w for w in self._pool if w.key is not None]
        if not busy:
            return []
        now = time.monotonic()
        deadlines = [w.deadline for w in busy if w.deadline is not None]
        limit = min([timeout, *[max(0.0, d - now) for d in deadlines]])
        ready = wait([w.conn for w in busy], timeout=limit)
        finished: list[tuple[str, StepResult]] = []
        for worker in busy:
            if worker.conn in ready:
                finished.append(self._collect(worker))
            elif worker.deadline is not None and time.monotonic() >= worker.deadline:
                finished.append(self._stop_timed_out(worker))
        self._dispatch()
        return finished

    def _collect(self, worker: _Worker) -> tuple[str, StepResult]:
        key = worker.key or ""
        try:
            got_key, result = worker.conn.recv()
        except (EOFError, OSError):
            code = worker.process.exitcode
            self._replace(worker)
            return key, StepResult(
                False, error=f"the worker process died (exit code {code}) while running the step", user_error=False
            )
        worker.key = worker.deadline = None
        return got_key, result

    def _stop_timed_out(self, worker: _Worker) -> tuple[str, StepResult]:
        key, seconds = worker.key or "", time.monotonic() - worker.started
        self._replace(worker)
        return key, StepResult(
            False,
            error=f"timed out after {seconds:.1f} s; its process was stopped",
            timed_out=True,
            user_error=True,
            seconds=seconds,
        )

    def _replace(self, worker: _Worker) -> None:
        with contextlib.suppress(Exception):
            worker.process.kill()
            worker.process.join(5)
        with contextlib.suppress(Exception):
            worker.conn.close()
        fresh = self._spawn()
        worker.process, worker.conn, worker.key, worker.deadline = fresh.process, fresh.conn, None, None

    def close(self) -> None:
        for worker in self._pool:
            with contextlib.suppress(Exception):
                if worker.key is None:
                    worker.conn.send(None)
                else:
                    worker.process.kill()
        for worker in self._pool:
            with contextlib.suppress(Exception):
                worker.process.join(5)
                if worker.process.is_alive():
                    worker.process.kill()
            with contextlib.suppress(Exception):
                worker.conn.close()
        self._pool = []


def make_executor(spec: str | Executor | None, *, trusted_only: bool = False) -> Executor:
    """An executor from its name: ``local`` (default), ``local:N`` (N workers), ``dask-local``, ``dask://HOST:PORT``.

    Args:
        spec: the executor's name (or an executor, returned as is).
        trusted_only: the name came from the network: only ``local`` and ``local:N`` with N at most
            :func:`max_local_workers` are allowed (a Dask scheduler named by the caller would send this process
            pickles of its choosing, and thousands of workers would exhaust the machine).

    Raises:
        BadInput: an unknown executor name.
        Forbidden: with ``trusted_only``, a Dask executor or more local workers than allowed.
    """
    if spec is None or spec == "local":
        return LocalExecutor()
    if not isinstance(spec, str):
        return spec
    if spec.startswith("local:") and spec[6:].isdigit():
        workers, most = int(spec[6:]), max_local_workers()
        if trusted_only and workers > most:
            raise Forbidden(
                f"Executor {spec!r} asks for {workers} worker processes; requests sent over the API may use at most "
                f"{most} (four per core). Use local:{most} or fewer.",
                executor=spec,
            )
        return LocalExecutor(workers=workers)
    is_dask = spec == "dask-local" or spec.startswith("dask://") or spec.startswith("tcp://")
    if is_dask and trusted_only:
        raise Forbidden(
            f"Executor {spec!r} is not allowed in requests sent over the API: a Dask scheduler sends this process "
            "pickled objects, and a local cluster starts processes beyond the API's limits, so only the user on "
            "this machine may choose one (--executor on the CLI, or the SDK). Use local or local:N here.",
            executor=spec,
        )
    if is_dask:
        from conveyor.pipelines._dask import DaskExecutor

        executor: Executor = DaskExecutor(spec)
        return executor
    raise BadInput(
        f"Unknown executor {spec!r}; use local, local:N (N worker processes), dask-local (starts a local Dask "
        "cluster) or dask://HOST:PORT (an existing Dask scheduler)."
    )


def max_local_workers() -> int:
    """The most local worker processes a request sent over the API may ask for: four per core."""
    return 4 * (os.cpu_count() or 1)
