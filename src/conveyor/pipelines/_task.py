"""One attempt of one step, as it travels to an executor and back, and the code that runs it there.

:func:`execute_task` is the user-code boundary: it loads the inputs, runs the user's function with its
stdout and stderr captured, stores the result, and turns any exception into a :class:`StepResult` that says
whether the failure was the user's (their code raised) or the platform's. Executors call it in a worker
process; nothing here writes metadata (the runner does, after a success), so a failed or killed attempt
leaves nothing visible.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["StepContext", "StepResult", "StepTask", "current_step", "execute_task"]

_MAX_LOG_BYTES = 8 << 20


@dataclass(frozen=True)
class StepTask:
    """Everything a worker needs to run one attempt, in picklable form."""

    run_id: str
    node: str
    attempt: int
    function: bytes | None
    sql: str | None
    inputs: dict[str, dict[str, Any]]
    params: dict[str, Any]
    settings: dict[str, Any]
    timeout: float | None = None
    #: how each table input is wanted (see ``_values.table_form``), decided where the step is defined.
    forms: dict[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    ok: bool
    output: dict[str, Any] | None = None
    error: str | None = None
    traceback: str | None = None
    user_error: bool = False
    timed_out: bool = False
    logs_digest: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class StepContext:
    """What a running step can ask about itself: ``conveyor.pipelines.current_step()``."""

    workspace: Workspace
    run_id: str
    node: str
    attempt: int
    params: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def dask(self) -> Iterator[Any]:
        """A client of the Dask cluster this step runs on, to spread work over partitions::

            with current_step().dask() as client:
                totals = client.gather(client.map(score_part, paths))

        The step's own worker thread steps aside while the block runs, so the cluster's threads all serve it.

        Raises:
            RuntimeError: the step does not run on a Dask executor.
        """
        try:
            from distributed import worker_client
        except ImportError as exc:
            raise RuntimeError("Dask is not installed: pip install 'conveyor-ml[dask]'.") from exc
        try:
            with worker_client() as client:
                yield client
        except ValueError as exc:
            raise RuntimeError("current_step().dask() works only for steps run with a Dask executor.") from exc


_CONTEXT: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar("conveyor_step", default=None)
_WORKSPACES: dict[tuple[Any, ...], Workspace] = {}


def current_step() -> StepContext:
    """The context of the step being run (its workspace, run id, node name, attempt, parameters).

    Raises:
        RuntimeError: called outside a running step.
    """
    context = _CONTEXT.get()
    if context is None:
        raise RuntimeError("current_step() is only available while a pipeline step runs.")
    return context


def open_workspace(settings: dict[str, Any]) -> Workspace:
    """The workspace a task names, opened once per worker process."""
    from conveyor.workspace import Workspace

    key = (
        settings["home"],
        settings["db_url"],
        settings["artifacts_url"],
        repr(sorted(settings.get("options", {}).items())),
    )
    ws = _WORKSPACES.get(key)
    if ws is None:
        os.environ["CONVEYOR_ARTIFACTS_OPTIONS"] = __import__("json").dumps(settings.get("options", {}))
        ws = Workspace.open(settings["home"], db_url=settings["db_url"], artifacts_url=settings["artifacts_url"])
        _WORKSPACES[key] = ws
    return ws


def execute_task(task: StepTask, *, capture: str = "fd") -> StepResult:
    """Run one attempt. ``capture="fd"`` redirects the process's own stdout/stderr (a dedicated worker
    process); ``"python"`` redirects only Python's streams (a shared process, such as a Dask worker thread)."""
    started = time.perf_counter()
    try:
        ws = open_workspace(task.settings)
    except Exception as exc:  # noqa: BLE001 - reported as the platform's failure
        return StepResult(
            False, error=f"the worker could not open the workspace: {exc}", traceback=traceback.format_exc()
        )
    token = _CONTEXT.set(StepContext(ws, task.run_id, task.node, task.attempt, dict(task.params)))
    try:
        with tempfile.TemporaryFile() as log:
            return _attempt(ws, task, log, capture, started)
    finally:
        _CONTEXT.reset(token)


def _attempt(ws: Workspace, task: StepTask, log: Any, capture: str, started: float) -> StepResult:
    try:
        func = _function(task)
        arguments = _load_inputs(ws, task)
    except Exception as exc:  # noqa: BLE001 - inputs that cannot be loaded are the platform's failure
        return _failure(exc, user=False, started=started)
    try:
        with _captured(log, capture):
            value = func(**arguments) if task.sql is None else _run_sql(task.sql, arguments, task.params)
    except BaseException as exc:  # the user's code: any exception is the user's error
        if isinstance(exc, KeyboardInterrupt):
            raise
        return _with_logs(ws, _failure(exc, user=True, started=started), log)
    try:
        if "runs" in ws.__dict__:  # what the step logged to tracked runs is stored before it counts as done
            ws.runs.flush()
        output = _store(ws, value)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be stored is the platform's failure
        return _with_logs(ws, _failure(exc, user=False, started=started), log)
    return _with_logs(ws, StepResult(True, output=output, seconds=time.perf_counter() - started), log)


def _function(task: StepTask) -> Any:
    if task.function is None:
        return None
    import cloudpickle

    return cloudpickle.loads(task.function)


def _load_inputs(ws: Workspace, task: StepTask) -> dict[str, Any]:
    from conveyor.pipelines._values import load_value

    # SQL steps take Arrow tables (DuckDB reads them without copying).
    return {
        name: load_value(ws, descriptor, "pyarrow" if task.sql is not None else task.forms.get(name))
        for name, descriptor in task.inputs.items()
    }


#: A SQL step sees its inputs and nothing else: no files, no network, no extensions, no Python variables, and
#: the query cannot turn any of it back on (a spec sent over the API could otherwise read or write any file).
SQL_STEP_CONFIG = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


def _run_sql(sql: str, tables: dict[str, Any], params: dict[str, Any]) -> Any:
    import shutil
    import tempfile

    import duckdb

    # With external access off DuckDB still reads its temp folder (default: .tmp under the working folder);
    # a private, empty one leaves nothing there to read.
    scratch = tempfile.mkdtemp(prefix="conveyor-sql-step-")
    connection = duckdb.connect(config={**SQL_STEP_CONFIG, "temp_directory": scratch})
    try:
        for name, table in tables.items():
            connection.register(name, table)
        used = {p: params[p] for p in re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", sql) if p in params}
        result = connection.execute(sql, used) if used else connection.execute(sql)
        return result.to_arrow_table()
    finally:
        connection.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _store(ws: Workspace, value: Any) -> dict[str, Any]:
    from conveyor.pipelines._values import store_value

    return store_value(ws, value)


def _failure(exc: BaseException, *, user: bool, started: float) -> StepResult:
    text = f"{type(exc).__name__}: {exc}".strip()
    return StepResult(
        False,
        error=text.splitlines()[0] if text else type(exc).__name__,
        traceback="".join(traceback.format_exception(exc)),
        user_error=user,
        seconds=time.perf_counter() - started,
    )


def _with_logs(ws: Workspace, result: StepResult, log: Any) -> StepResult:
    log.flush()
    log.seek(0)
    data = log.read(_MAX_LOG_BYTES + 1)
    if len(data) > _MAX_LOG_BYTES:
        data = data[:_MAX_LOG_BYTES] + b"\n[log cut at 8 MB]\n"
    if result.traceback and not result.ok:
        data += ("\n" + result.traceback).encode()
    if not data:
        return result
    digest = ws.artifacts.put_bytes(data).digest
    return StepResult(
        result.ok,
        output=result.output,
        error=result.error,
        traceback=result.traceback,
        user_error=result.user_error,
        timed_out=result.timed_out,
        logs_digest=digest,
        seconds=result.seconds,
    )


@contextlib.contextmanager
def _captured(log: Any, mode: str) -> Iterator[None]:
    if mode == "python":
        text = io.TextIOWrapper(log, encoding="utf-8", errors="replace", write_through=True)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        finally:
            text.flush()
            text.detach()
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
