"""The buffered background writer behind ``run.log_*``: logging calls append to a buffer and return at once;
one thread per workspace commits the buffer in batches (one transaction, executemany inserts).

Nothing logged is lost silently: the buffer is flushed when a run ends, when ``ws.runs`` reads, at interpreter
exit (``atexit``) and on SIGTERM (turned into ``SystemExit`` so ``with`` blocks unwind and runs end as
``killed``). A batch that cannot be written is retried while the store is unreachable; any other failure is
kept and raised by the next ``flush()`` (a ``run.end()``, a read), and reported on stderr at exit with the
number of values that were not stored. Only a SIGKILL or a power cut can drop what was logged in the last
``interval`` seconds (0.1 s by default).

The same thread writes the heartbeat of the runs this process records (every ``HEARTBEAT_SECONDS``), the sign
of life a reader on another machine needs to mark a run whose process died as ``crashed`` (on this machine the
PID decides; see ``conveyor._owner``). A run left open when the workspace closes or the interpreter exits is
ended there: ``finished``, ``failed`` after an uncaught exception, ``killed`` after SIGTERM.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from conveyor.errors import Conflict, ConveyorError, StoreUnavailable
from conveyor.store._heartbeat import HEARTBEAT_SECONDS, beat_value
from conveyor.store._metric_chunks import encode, to_micros
from conveyor.store._schema import RunLatestMetricRow, RunMetricChunkRow, RunParamRow, RunRow, RunTagRow, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from conveyor.store import MetadataStore

__all__ = ["TrackingWriter"]

#: A metric as buffered: (run_id, key, value, step, timestamp).
MetricTuple = tuple[str, str, float, int, datetime]

_WRITERS: weakref.WeakSet[TrackingWriter] = weakref.WeakSet()
_HOOKS_INSTALLED = False
_HOOKS_LOCK = threading.Lock()
#: the signal that is ending this process (SIGTERM turned into SystemExit), for runs still open at exit
_TERMINATED_BY: int | None = None
log = logging.getLogger("conveyor.tracking")


@dataclass
class _Batch:
    metrics: list[MetricTuple] = field(default_factory=list)
    params: dict[tuple[str, str], str] = field(default_factory=dict)
    tags: dict[tuple[str, str], str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.metrics) + len(self.params) + len(self.tags)


class TrackingWriter:
    """Batches metric, parameter and tag writes of every run of one workspace."""

    def __init__(self, store: MetadataStore, *, interval: float = 0.1, max_batch: int = 20_000) -> None:
        self._store = store
        self._interval = interval
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._pending = _Batch()
        self._submitted = 0  # items handed to the writer, ever
        self._written = 0  # items committed (or given up on), ever
        self._error: BaseException | None = None
        self._lost = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._watched: dict[str, None] = {}  # runs this process records (an ordered set), for their heartbeat
        self._beat_at = 0.0  # monotonic time of the next heartbeat

    # -- the logging side ----------------------------------------------------------------------------

    def metrics(self, rows: list[MetricTuple]) -> None:
        with self._lock:
            self._pending.metrics.extend(rows)
            self._queued(len(rows))

    def params(self, run_id: str, params: dict[str, str]) -> None:
        self._keyed("params", run_id, params)

    def tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._keyed("tags", run_id, tags)

    def _keyed(self, kind: str, run_id: str, values: dict[str, str]) -> None:
        """Buffer parameters or tags; a key logged again before the batch is written counts once."""
        with self._lock:
            pending: dict[tuple[str, str], str] = getattr(self._pending, kind)
            before = len(pending)
            pending.update(((run_id, key), value) for key, value in values.items())
            self._queued(len(pending) - before)

    def watch(self, run_id: str) -> None:
        """Keep run ``run_id``'s heartbeat beating while this process records it."""
        with self._lock:
            if not self._watched:
                self._beat_at = time.monotonic() + HEARTBEAT_SECONDS
            self._watched[run_id] = None
            if self._thread is None:
                self._start()
            self._wake.notify()

    def unwatch(self, run_id: str) -> None:
        with self._lock:
            self._watched.pop(run_id, None)

    def _queued(self, count: int) -> None:
        """Called under the lock after ``count`` new items were buffered."""
        self._submitted += count
        if self._thread is None:
            self._start()
        pending = len(self._pending)
        if pending == count or pending >= self._max_batch:  # the first item of a batch, or a full batch
            self._wake.notify()

    def flush(self, timeout: float | None = 60.0) -> None:
        """Wait until everything logged so far is committed.

        Raises:
            ConveyorError: a batch could not be written (the first such error; it is then cleared).
            StoreUnavailable: the store stayed unreachable for ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._submitted
            if self._written < target:
                self._wake.notify()
            while self._written < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise StoreUnavailable(
                        f"{target - self._written} logged values are not stored yet: the metadata store has not "
                        f"answered for {timeout:.0f} s. They stay buffered and are retried."
                    )
                self._done.wait(remaining)
            error, self._error = self._error, None
            lost, self._lost = self._lost, 0
        if error is not None:
            if isinstance(error, ConveyorError):
                raise error
            cause = getattr(error, "orig", None) or error  # the driver's own words, not SQLAlchemy's wrapper
            raise ConveyorError(
                f"{lost} logged values could not be stored: {type(cause).__name__}: {str(cause).splitlines()[0]}"
            ) from error

    def close(self, *, at_exit: bool = False) -> None:
        """Flush, end the runs still open, and stop the thread; errors are reported on stderr (this runs at
        exit, ``at_exit``: then an uncaught exception or SIGTERM decides how open runs end)."""
        try:
            self.flush(timeout=30)
        except ConveyorError as exc:
            print(f"conveyor: tracking: {exc}", file=sys.stderr)
            self._end_open_runs("failed", f"logged values were not stored: {exc}")
            return
        self._end_open_runs(*_exit_status(at_exit))
        with self._lock:
            self._closing = True
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._lock:
            lost = self._lost + (self._submitted - self._written)
        if lost:
            print(f"conveyor: tracking: {lost} logged values could not be stored.", file=sys.stderr)

    def _reset_after_fork(self) -> None:
        """In a forked child: the parent writes what it buffered; the child starts empty, without a thread."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._pending = _Batch()
        self._submitted = self._written = self._lost = 0
        self._error = None
        self._thread = None
        self._watched = {}  # the parent's runs: the parent beats for them

    # -- the writing side ----------------------------------------------------------------------------

    def _start(self) -> None:
        _install_exit_hooks()
        _WRITERS.add(self)
        self._thread = threading.Thread(target=self._loop, name="conveyor-tracking-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            beat: list[str] = []
            with self._lock:
                while not len(self._pending) and not self._closing:
                    if not self._watched:
                        self._wake.wait()
                        continue
                    # a monotonic schedule: a wall clock set back or forward neither stops nor floods the beats
                    remaining = self._beat_at - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                if not len(self._pending) and self._closing:
                    self._thread = None
                    return
                if len(self._pending) and len(self._pending) < self._max_batch and not self._closing:
                    # gather for a moment: many small calls become one transaction
                    self._wake.wait(self._interval)
                batch, self._pending = self._pending, _Batch()
                if self._watched and time.monotonic() >= self._beat_at and not self._closing:
                    beat = list(self._watched)
                    self._beat_at = time.monotonic() + HEARTBEAT_SECONDS
            count = len(batch)
            if count:
                error = self._write_with_retry(batch)
                with self._lock:
                    if error is not None:
                        self._error = self._error or error
                        self._lost += count
                    self._written += count
                    self._done.notify_all()
            if beat:
                self._beat(beat)

    def _beat(self, run_ids: list[str]) -> None:
        """Write the heartbeat of ``run_ids``. A run a reader marked ``crashed`` while this process was
        unreachable (another machine, a network partition) is running again: its process is alive after all."""
        try:
            with self._store.write(audited=False) as session:
                beaten = session.execute(
                    sa.update(RunRow)
                    .where(RunRow.id.in_(run_ids), RunRow.status == "running")
                    .values(heartbeat_at=beat_value(session)),
                    execution_options={"synchronize_session": False},
                )
                if cast(sa.CursorResult[Any], beaten).rowcount == len(run_ids):
                    return
            with self._store.write() as session:  # a change of status: an audited action
                session.execute(
                    sa.update(RunRow)
                    .where(RunRow.id.in_(run_ids), RunRow.status == "crashed")
                    .values(status="running", ended_at=None, error=None, heartbeat_at=beat_value(session)),
                    execution_options={"synchronize_session": False},
                )
        except Exception:  # a missed beat is retried at the next one; logging goes on
            log.debug("could not write the heartbeat of runs %s", run_ids, exc_info=True)

    def _end_open_runs(self, status: str, error: str | None) -> None:
        """End the runs this process started and never ended (the workspace closes, or the interpreter exits)."""
        with self._lock:
            run_ids, self._watched = list(self._watched), {}
        if not run_ids:
            return
        try:
            with self._store.write() as session:
                session.execute(
                    sa.update(RunRow)
                    .where(RunRow.id.in_(run_ids), RunRow.status.in_(("running", "crashed")))
                    .values(status=status, ended_at=utcnow(), error=error),
                    execution_options={"synchronize_session": False},
                )
        except Exception as exc:  # noqa: BLE001 - at exit: say so; a reader marks them crashed later
            print(f"conveyor: tracking: could not end runs {', '.join(run_ids)}: {exc}", file=sys.stderr)

    def _write_with_retry(self, batch: _Batch) -> BaseException | None:
        delay = 0.05
        deadline = time.monotonic() + 60
        while True:
            try:
                with self._store.write() as session:
                    _write(session, batch)
                return None
            except StoreUnavailable as exc:
                if time.monotonic() > deadline or self._closing:
                    return exc
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception as exc:  # noqa: BLE001 - kept and raised to the caller by flush()
                return exc


def _write(session: Session, batch: _Batch) -> None:
    if batch.params:
        _write_params(session, batch.params)
    if batch.tags:
        upsert = _insert(session, RunTagRow)
        rows = [{"run_id": r, "key": k, "value": v} for (r, k), v in batch.tags.items()]
        session.execute(
            upsert.on_conflict_do_update(index_elements=["run_id", "key"], set_={"value": upsert.excluded.value}), rows
        )
    if batch.metrics:
        _insert_metrics(session, batch.metrics)
        latest: dict[tuple[str, str], MetricTuple] = {}
        for row in batch.metrics:
            known = latest.get((row[0], row[1]))
            if known is None or (row[3], row[4]) >= (known[3], known[4]):
                latest[(row[0], row[1])] = row
        upsert = _insert(session, RunLatestMetricRow)
        table = RunLatestMetricRow.__table__
        newer = sa.or_(
            upsert.excluded.step > table.c.step,
            sa.and_(upsert.excluded.step == table.c.step, upsert.excluded.timestamp >= table.c.timestamp),
        )
        session.execute(
            upsert.on_conflict_do_update(
                index_elements=["run_id", "key"],
                set_={
                    "value": upsert.excluded.value,
                    "step": upsert.excluded.step,
                    "timestamp": upsert.excluded.timestamp,
                },
                where=newer,
            ),
            [{"run_id": r, "key": k, "value": v, "step": s, "timestamp": t} for r, k, v, s, t in latest.values()],
        )


def _insert_metrics(session: Session, metrics: list[MetricTuple]) -> None:
    """The batch's history as one chunk per run and metric (a few rows however many values)."""
    groups: dict[tuple[str, str], tuple[list[int], list[float], list[int]]] = {}
    micros: dict[datetime, int] = {}  # a log_batch call stamps all its values with one time
    for run_id, key, value, step, when in metrics:
        group = groups.get((run_id, key))
        if group is None:
            group = groups[(run_id, key)] = ([], [], [])
        group[0].append(step)
        group[1].append(value)
        stamp = micros.get(when)
        if stamp is None:
            stamp = micros[when] = to_micros(when)
        group[2].append(stamp)
    session.execute(
        sa.insert(RunMetricChunkRow),
        [
            {
                "run_id": run_id,
                "key": key,
                "count": len(steps),
                "min_step": min(steps),
                "max_step": max(steps),
                "data": encode(steps, values, stamps),
            }
            for (run_id, key), (steps, values, stamps) in groups.items()
        ],
    )


def _write_params(session: Session, params: dict[tuple[str, str], str]) -> None:
    """Insert new parameters; one logged before with another value is a conflict (nothing of the batch is
    written then)."""
    run_ids = {run_id for run_id, _ in params}
    existing = {
        (row.run_id, row.key): row.value
        for row in session.execute(
            sa.select(RunParamRow.run_id, RunParamRow.key, RunParamRow.value).where(
                RunParamRow.run_id.in_(run_ids), RunParamRow.key.in_({key for _, key in params})
            )
        )
    }
    fresh = []
    for (run_id, key), value in params.items():
        if (run_id, key) in existing:
            if existing[(run_id, key)] != value:
                raise Conflict(
                    f"Parameter {key!r} of run {run_id} is already {existing[(run_id, key)]!r}; parameters cannot "
                    f"change (got {value!r}). Log it under another key, or start a new run.",
                )
            continue
        fresh.append({"run_id": run_id, "key": key, "value": value})
    if fresh:
        session.execute(sa.insert(RunParamRow), fresh)


def _insert(session: Session, entity: type[Any]) -> Any:
    """An INSERT with ``on_conflict_do_update`` for the session's backend (SQLite or PostgreSQL)."""
    from sqlalchemy.dialects import postgresql, sqlite

    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(entity)
    return sqlite.insert(entity)


def _after_fork_in_child() -> None:
    for writer in list(_WRITERS):
        writer._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _flush_all() -> None:
    for writer in list(_WRITERS):
        writer.close(at_exit=True)


def _exit_status(at_exit: bool) -> tuple[str, str | None]:
    """How runs left open end: ``killed`` after SIGTERM, ``failed`` when the interpreter exits on an uncaught
    exception, else ``finished``."""
    if not at_exit:
        return "finished", None
    if _TERMINATED_BY is not None:
        return "killed", f"the process received signal {_TERMINATED_BY}"
    # An interactive session (IPython, the REPL) keeps the last error of any cell: it says nothing about the exit.
    uncaught = None if "IPython" in sys.modules or hasattr(sys, "ps1") else getattr(sys, "last_value", None)
    if isinstance(uncaught, KeyboardInterrupt):
        return "killed", "KeyboardInterrupt"
    if isinstance(uncaught, BaseException) and not isinstance(uncaught, SystemExit):
        return "failed", f"{type(uncaught).__name__}: {uncaught}"
    return "finished", None


def _on_sigterm(signum: int, frame: Any) -> None:
    # Unwind like Ctrl+C does: `with ws.runs.start()` blocks end their runs as "killed" and flush.
    global _TERMINATED_BY  # noqa: PLW0603 - what ends the process
    _TERMINATED_BY = signum
    raise SystemExit(128 + signum)


def _install_exit_hooks() -> None:
    """atexit flush, and SIGTERM → SystemExit when nobody else handles SIGTERM (main thread only)."""
    global _HOOKS_INSTALLED  # noqa: PLW0603 - once per process
    with _HOOKS_LOCK:
        if _HOOKS_INSTALLED:
            return
        _HOOKS_INSTALLED = True
        atexit.register(_flush_all)
        if threading.current_thread() is threading.main_thread() and os.name == "posix":
            try:
                if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                    signal.signal(signal.SIGTERM, _on_sigterm)
            except ValueError:  # not the main interpreter
                pass
