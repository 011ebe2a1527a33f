"""Experiments and runs: parameters, metrics by step, tags, artifacts and inputs.

A run records the process that records it (host, PID, start time) and that process's heartbeat. Reads mark a
``running`` run whose process is gone as ``crashed`` (:meth:`Tracking.mark_crashed`): ended at its last sign of
life, with the last stored step and time in its ``error``: values logged after that may not have been stored.
"""

from __future__ import annotations

import builtins
import math
import mimetypes
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from conveyor._owner import this_process
from conveyor.errors import BadInput, Conflict, NotFound, did_you_mean
from conveyor.governance import add_edge, run_inputs
from conveyor.refs import validate_name
from conveyor.store._heartbeat import Liveness, beat_value
from conveyor.store._helpers import lock_or_create
from conveyor.store._metric_chunks import from_micros, points
from conveyor.store._schema import (
    ExperimentRow,
    LineageEdgeRow,
    RunArtifactRow,
    RunLatestMetricRow,
    RunMetricChunkRow,
    RunParamRow,
    RunRow,
    RunTagRow,
    utcnow,
)
from conveyor.tracking._search import PageToken, order_clauses, parse_filter, parse_order_by
from conveyor.tracking._writer import TrackingWriter

if TYPE_CHECKING:
    from conveyor.data import DataVersion
    from conveyor.registry import LoggedModel
    from conveyor.store import Blob
    from conveyor.workspace import Workspace

__all__ = ["ActiveRun", "Artifact", "Comparison", "Experiment", "Metric", "Run", "RunPage", "RunStatus", "Tracking"]

RunStatus = str  # "running" | "finished" | "failed" | "killed" | "crashed" (its process died; see mark_crashed)
DEFAULT_EXPERIMENT = "Default"


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    step: int
    timestamp: datetime


@dataclass(frozen=True)
class Artifact:
    path: str
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Run:
    """A tracked run as stored; ``metrics`` holds each metric's value at its highest step."""

    id: str
    experiment: str
    name: str
    status: RunStatus
    started_at: datetime
    ended_at: datetime | None
    created_by: str
    parent_run_id: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    artifacts: list[Artifact]
    inputs: list[str]
    error: str | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Experiment:
    id: str
    name: str
    runs: int
    last_run_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class RunPage:
    """One page of a search; pass ``next_page_token`` back for the next (``None`` on the last page)."""

    runs: list[Run]
    next_page_token: str | None


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: each parameter and metric by run id, and which of them differ."""

    runs: list[Run]
    params: dict[str, dict[str, str | None]]
    metrics: dict[str, dict[str, float | None]]
    differing_params: list[str]
    differing_metrics: list[str]


class ActiveRun:
    """A run being recorded. Use it as a context manager: it ends as ``finished``, or ``failed``/``killed``
    if the block raises.
    """

    def __init__(self, tracking: Tracking, run_id: str, experiment: str) -> None:
        self._tracking = tracking
        self._ws = tracking._ws
        self.id = run_id
        self.experiment = experiment
        self._ended = False
        self._params: dict[str, str] = {}
        self._writer = tracking._writer

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ended:
            return
        if exc_type is None:
            self.end("finished")
        elif issubclass(exc_type, KeyboardInterrupt | SystemExit):
            self.end("killed", error=f"{exc_type.__name__}")
        else:
            self.end("failed", error=f"{exc_type.__name__}: {exc}")

    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: dict[str, Any]) -> None:
        """Record parameters; logging a key again with a different value is a conflict.

        Raises:
            Conflict: a parameter was already logged with another value (checked here against this
                run's earlier calls; against values stored by another process when the batch is written,
                raised by the next ``flush()``/``end()``).
        """
        text = {_check_key(k): _param_text(v) for k, v in params.items()}
        for key, value in text.items():
            known = self._params.get(key)
            if known is not None and known != value:
                raise Conflict(
                    f"Parameter {key!r} of run {self.id} is already {known!r}; parameters cannot change "
                    f"(got {value!r}). Log it under another key, or start a new run.",
                )
        self._params.update(text)
        self._writer.params(self.id, text)

    def log_metric(self, key: str, value: float, step: int = 0, timestamp: datetime | None = None) -> None:
        """Record one value of a metric. Returns at once; a background writer stores it in batches.

        Raises:
            BadInput: the value is not a finite number, or the key is not 1-250 characters of text.
        """
        self._writer.metrics([(self.id, _check_key(key), _metric_value(key, value), int(step), timestamp or utcnow())])

    def log_metrics(self, metrics: dict[str, float], step: int = 0, timestamp: datetime | None = None) -> None:
        """Record values of several metrics at ``step`` (see ``log_metric``).

        Raises:
            BadInput: a value is not a finite number.
        """
        now = timestamp or utcnow()
        step = int(step)
        self._writer.metrics([(self.id, _check_key(k), _metric_value(k, v), step, now) for k, v in metrics.items()])

    def log_batch(
        self,
        metrics: builtins.list[tuple[str, float, int]] | None = None,
        params: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        """Record many values at once: ``metrics`` as ``(key, value, step)`` triples.

        Raises:
            BadInput: a value is not a finite number.
            Conflict: a parameter changes value.
        """
        if params:
            self.log_params(params)
        if tags:
            self._writer.tags(self.id, {_check_key(k): str(v) for k, v in tags.items()})
        if metrics:
            now = utcnow()
            self._writer.metrics([(self.id, _check_key(k), _metric_value(k, v), int(s), now) for k, v, s in metrics])

    def set_tag(self, key: str, value: Any) -> None:
        self._writer.tags(self.id, {_check_key(key): str(value)})

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._writer.tags(self.id, {_check_key(k): str(v) for k, v in tags.items()})

    def log_model(
        self,
        model: Any,
        *,
        name: str = "model",
        signature: dict[str, Any] | None = None,
        input_example: Any = None,
        metrics: dict[str, Any] | None = None,
    ) -> LoggedModel:
        """Store a fitted model as artifacts of this run under ``name/`` (skops when safe), ready for
        ``conveyor models register --run RUN``. See ``ws.models.log_model``."""
        self.flush()
        return self._ws.models.log_model(
            self.id, model, name=name, signature=signature, input_example=input_example, metrics=metrics
        )

    def child(self, name: str = "", *, tags: dict[str, Any] | None = None) -> ActiveRun:
        """Start a child run of this run (a trial of a sweep, a fold): same experiment, ``parent_run_id`` set."""
        return self._tracking.start(self.experiment, name=name, parent_run_id=self.id, tags=tags)

    def flush(self) -> None:
        """Wait until everything this process logged is stored.

        Raises:
            ConveyorError: a batch could not be written.
        """
        self._writer.flush()

    def log_artifact(self, path: str | Path, name: str | None = None) -> Artifact:
        """Store a local file as an artifact of the run under ``name`` (default: the file's name)."""
        file = Path(path)
        blob = self._ws.artifacts.put_file(file)
        return self._record_artifact(name or file.name, blob)

    def log_bytes(self, name: str, data: bytes, media_type: str | None = None) -> Artifact:
        """Store bytes (a JSON report, a rendered figure) as an artifact of the run."""
        return self._record_artifact(name, self._ws.artifacts.put_bytes(data), media_type)

    def log_input(self, version: DataVersion) -> None:
        """Record that this run read a data version (an edge of the lineage graph)."""
        with self._ws.store.write() as session:
            add_edge(session, "data_version", version.id, "read_by", "run", self.id)

    def end(self, status: RunStatus = "finished", error: str | None = None) -> None:
        """End the run after storing everything logged to it.

        Raises:
            ConveyorError: logged values could not be stored (the run still ends, as ``failed``).
        """
        flush_error: Exception | None = None
        try:
            self._writer.flush()
        except Exception as exc:  # noqa: BLE001 - the run must still end; the error is raised below
            flush_error = exc
            status = "failed"
            error = f"{error + '; ' if error else ''}logged values were not stored: {exc}"
        with self._ws.store.write() as session:
            row = session.get(RunRow, self.id)
            if row is None:
                raise NotFound(f"Run {self.id} no longer exists.")
            row.status = status
            row.ended_at = utcnow()
            row.error = error
        self._ended = True
        self._writer.unwatch(self.id)
        if flush_error is not None:
            raise flush_error

    def _record_artifact(self, name: str, blob: Blob, media_type: str | None = None) -> Artifact:
        if not name or name.startswith("/") or ".." in Path(name).parts:
            raise BadInput(f"Artifact name {name!r} must be a relative path without '..'.")
        media = media_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        with self._ws.store.write() as session:
            session.merge(
                RunArtifactRow(run_id=self.id, path=name, digest=blob.digest, size=blob.size, media_type=media)
            )
        return Artifact(name, blob.digest, blob.size, media)


class Tracking:
    """The tracking service, reached as ``ws.runs``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace
        self._writer = TrackingWriter(workspace.store)

    def close(self) -> None:
        """Store everything logged and stop the background writer (``Workspace.close`` calls this)."""
        self._writer.close()

    def flush(self) -> None:
        """Wait until everything logged in this process is stored.

        Raises:
            ConveyorError: a batch could not be written.
        """
        self._writer.flush()

    def start(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        name: str = "",
        parent_run_id: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> ActiveRun:
        """Start a run in ``experiment`` (created on first use).

        Raises:
            NotFound: ``parent_run_id`` names no run.
        """
        validate_name(experiment, "experiment")
        me = this_process()
        with self._ws.store.write() as session:
            if parent_run_id is not None and session.get(RunRow, parent_run_id) is None:
                raise NotFound(f"No run with id {parent_run_id!r} to be the parent run.", run_id=parent_run_id)
            exp = lock_or_create(session, ExperimentRow, name=experiment, created_by=self._ws.actor)
            row = RunRow(
                experiment_id=exp.id,
                parent_run_id=parent_run_id,
                name=name,
                status="running",
                created_by=self._ws.actor,
                process_host=me.host,
                process_pid=me.pid,
                process_key=me.key,
                heartbeat_at=beat_value(session),
            )
            session.add(row)
            session.flush()
            for key, value in (tags or {}).items():
                session.add(RunTagRow(run_id=row.id, key=_check_key(key), value=str(value)))
            run_id = row.id
        self._writer.watch(run_id)
        return ActiveRun(self, run_id, experiment)

    def mark_crashed(self) -> builtins.list[str]:
        """Mark each ``running`` run whose process is gone as ``crashed``; returns their ids.

        On this machine a run's process is gone when its PID no longer runs (or now belongs to a process that
        started at another time); on another machine when its heartbeat is older than a minute. A crashed run
        ends at its last sign of life (heartbeat or stored value); its ``error`` names the last stored step and
        time, after which logged values may be lost. Every read (``get``, ``list``, ``search``, ``compare``) calls
        this first, and so does the scheduler of ``conveyor server`` / ``conveyor scheduler``.
        """
        with self._ws.store.read() as session:
            running = session.execute(
                sa.select(
                    RunRow.id, RunRow.process_host, RunRow.process_pid, RunRow.process_key, RunRow.heartbeat_at
                ).where(RunRow.status == "running")
            ).all()
            if not running:
                return []
            liveness = Liveness(session)
            gone: dict[str, tuple[str, str | None, int | None, datetime | None]] = {}
            for run_id, host, pid, key, beat in running:
                dead, why = liveness.gone(host, pid, key, beat)
                if dead:
                    gone[run_id] = (why, host, pid, beat)
            if not gone:
                return []
            last = {
                run_id: (step, at)
                for run_id, step, at in session.execute(
                    sa.select(
                        RunLatestMetricRow.run_id,
                        sa.func.max(RunLatestMetricRow.step),
                        sa.func.max(RunLatestMetricRow.timestamp),
                    )
                    .where(RunLatestMetricRow.run_id.in_(gone))
                    .group_by(RunLatestMetricRow.run_id)
                )
            }
        now = utcnow()
        marked = []
        with self._ws.store.write() as session:
            for run_id, (why, host, pid, beat) in gone.items():
                step, at = last.get(run_id, (None, None))
                signs = [t for t in (beat, at) if t is not None]
                ended = min(max(signs), now) if signs else now
                stored = (
                    f"The stored values reach step {step}, the last logged at "
                    f"{at:%Y-%m-%d %H:%M:%S}.{at.microsecond // 1000:03d} UTC"
                    if at is not None
                    else "It had stored no metric values"
                )
                error = (
                    f"The process recording this run (PID {pid} on {host}) is gone: {why}. {stored}; values logged "
                    "after that may be lost."
                )
                changed = session.execute(
                    sa.update(RunRow)
                    .where(RunRow.id == run_id, RunRow.status == "running")
                    .values(status="crashed", ended_at=ended, error=error),
                    execution_options={"synchronize_session": False},
                )
                if cast(sa.CursorResult[Any], changed).rowcount:
                    marked.append(run_id)
        return marked

    def get(self, run_id: str) -> Run:
        """The run with this id (after storing anything this process logged).

        Raises:
            NotFound: no run has that id.
        """
        self._writer.flush()
        self.mark_crashed()
        with self._ws.store.read() as session:
            runs = _hydrate(session, [run_id])
        if not runs:
            raise NotFound(f"No run with id {run_id!r}. List runs with 'conveyor runs list'.", run_id=run_id)
        return runs[0]

    def list(self, experiment: str | None = None, limit: int = 50) -> builtins.list[Run]:
        """The most recent runs (newest first), optionally of one experiment.

        Raises:
            NotFound: the experiment does not exist.
        """
        return self.search(experiments=None if experiment is None else [experiment], max_results=limit).runs

    def children_counts(self, run_ids: builtins.list[str]) -> dict[str, int]:
        """How many child runs each of ``run_ids`` has (one query; runs without children are left out)."""
        if not run_ids:
            return {}
        with self._ws.store.read() as session:
            rows = session.execute(
                sa.select(RunRow.parent_run_id, sa.func.count())
                .where(RunRow.parent_run_id.in_(run_ids))
                .group_by(RunRow.parent_run_id)
            ).all()
        return {str(parent): int(count) for parent, count in rows}

    def search(
        self,
        filter: str | None = None,
        *,
        experiments: builtins.list[str] | None = None,
        order_by: builtins.list[str] | str | None = None,
        max_results: int = 100,
        page_token: str | None = None,
    ) -> RunPage:
        """Runs matching a filter expression, in an order, one page at a time.

        ``filter`` e.g. ``"metrics.auc > 0.8 and params.learner = 'lgbm'"`` (grammar in
        ``conveyor.tracking._search``); ``order_by`` e.g. ``["metrics.auc desc"]`` (default: newest first).

        Raises:
            BadInput: the filter, ordering or page token cannot be read, or ``max_results`` is out of range.
            NotFound: an experiment does not exist.
        """
        if not 1 <= max_results <= 10_000:
            raise BadInput(f"max_results must be between 1 and 10000, not {max_results}.")
        condition, required_metrics = parse_filter(filter)
        orderings = parse_order_by(order_by)
        fingerprint = PageToken.fingerprint(filter, sorted(experiments or []), order_by)
        offset = PageToken.decode(page_token, fingerprint)
        self._writer.flush()
        self.mark_crashed()
        with self._ws.store.read() as session:
            where = [condition]
            if experiments:
                where.append(RunRow.experiment_id.in_(self._experiment_ids(session, experiments)))
            first = orderings[0] if len(orderings) == 1 else None
            if first is not None and first.field.kind == "metric" and first.field.key in required_metrics:
                # Walk the metric's (key, value, run_id) index in order; each entry's run is checked
                # against the filter until a page is full: no sort of every matching run.
                metric = sa.orm.aliased(RunLatestMetricRow, name="ordered")
                matches = (
                    sa.select(sa.literal(1))
                    .select_from(RunRow)
                    .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
                    .where(RunRow.id == metric.run_id, *where)
                )
                direction = sa.desc if first.descending else sa.asc
                query = (
                    sa.select(metric.run_id)
                    .where(metric.key == first.field.key, sa.exists(matches))
                    .order_by(direction(metric.value), direction(metric.run_id))
                )
            else:
                query = sa.select(RunRow.id).join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id).where(*where)
                query = order_clauses(query, orderings, required_metrics)
            ids = builtins.list(session.scalars(query.offset(offset).limit(max_results + 1)))
            more = len(ids) > max_results
            runs = _hydrate(session, ids[:max_results])
        token = PageToken.encode(offset + max_results, fingerprint) if more else None
        return RunPage(runs, token)

    def compare(self, run_ids: builtins.list[str]) -> Comparison:
        """Runs side by side.

        Raises:
            BadInput: fewer than two run ids.
            NotFound: a run does not exist.
        """
        if len(run_ids) < 2:
            raise BadInput("Compare at least two runs.")
        self._writer.flush()
        self.mark_crashed()
        with self._ws.store.read() as session:
            runs = _hydrate(session, run_ids)
        missing = [i for i in run_ids if i not in {r.id for r in runs}]
        if missing:
            raise NotFound(f"No run with id {missing[0]!r}. List runs with 'conveyor runs list'.", run_id=missing[0])
        param_keys = sorted({k for r in runs for k in r.params})
        metric_keys = sorted({k for r in runs for k in r.metrics})
        params = {k: {r.id: r.params.get(k) for r in runs} for k in param_keys}
        metrics = {k: {r.id: r.metrics.get(k) for r in runs} for k in metric_keys}
        return Comparison(
            runs=runs,
            params=params,
            metrics=metrics,
            differing_params=[k for k, v in params.items() if len(set(v.values())) > 1],
            differing_metrics=[k for k, v in metrics.items() if len(set(v.values())) > 1],
        )

    def compare_html(self, run_ids: builtins.list[str]) -> str:
        """An offline HTML page charting the runs: parameters against metrics, metric histories by step.

        Raises:
            BadInput: fewer than two run ids.
            NotFound: a run does not exist.
        """
        from conveyor.tracking._charts import comparison_html

        comparison = self.compare(run_ids)
        histories: dict[str, dict[str, builtins.list[Metric]]] = {}
        with self._ws.store.read() as session:
            chunks: dict[tuple[str, str], builtins.list[tuple[bytes, int]]] = {}
            for run_id, key, data, count in session.execute(
                sa.select(
                    RunMetricChunkRow.run_id, RunMetricChunkRow.key, RunMetricChunkRow.data, RunMetricChunkRow.count
                )
                .where(RunMetricChunkRow.run_id.in_(run_ids))
                .order_by(RunMetricChunkRow.id)
            ):
                chunks.setdefault((run_id, key), []).append((bytes(data), count))
        for (run_id, key), parts in sorted(chunks.items()):
            histories.setdefault(key, {})[run_id] = _history(key, parts)
        return comparison_html(comparison, histories)

    def experiments(self) -> builtins.list[Experiment]:
        """Every experiment with its number of runs and the time of its latest run."""
        with self._ws.store.read() as session:
            rows = session.execute(
                sa.select(ExperimentRow, sa.func.count(RunRow.id), sa.func.max(RunRow.started_at))
                .outerjoin(RunRow, RunRow.experiment_id == ExperimentRow.id)
                .group_by(ExperimentRow.id)
                .order_by(ExperimentRow.name)
            ).all()
            return [Experiment(e.id, e.name, int(n), last, e.created_at) for e, n, last in rows]

    def metric_history(self, run_id: str, key: str) -> builtins.list[Metric]:
        """Every logged value of metric ``key`` of a run, by step.

        Raises:
            NotFound: no such run, or the run never logged ``key``.
        """
        self.get(run_id)
        with self._ws.store.read() as session:
            parts = [
                (bytes(data), count)
                for data, count in session.execute(
                    sa.select(RunMetricChunkRow.data, RunMetricChunkRow.count)
                    .where(RunMetricChunkRow.run_id == run_id, RunMetricChunkRow.key == key)
                    .order_by(RunMetricChunkRow.id)
                )
            ]
            history = _history(key, parts)
            if not history:
                keys = session.scalars(sa.select(RunLatestMetricRow.key).filter_by(run_id=run_id)).all()
                raise NotFound(f"Run {run_id} has no metric {key!r}.{did_you_mean(key, keys)}", run_id=run_id)
            return history

    def artifact_bytes(self, run_id: str, path: str) -> bytes:
        """The bytes of one artifact of a run (verified against its digest).

        Raises:
            NotFound: the run has no artifact at ``path``.
        """
        return self.artifact(run_id, path)[1]

    def artifact(self, run_id: str, path: str) -> tuple[Artifact, bytes]:
        """One artifact of a run as recorded (path, digest, size, media type) and its verified bytes.

        Raises:
            NotFound: the run has no artifact at ``path``.
        """
        with self._ws.store.read() as session:
            row = session.get(RunArtifactRow, (run_id, path))
            if row is None:
                names = session.scalars(sa.select(RunArtifactRow.path).filter_by(run_id=run_id)).all()
                raise NotFound(f"Run {run_id} has no artifact {path!r}.{did_you_mean(path, names)}")
            found = Artifact(row.path, row.digest, row.size, row.media_type)
        return found, self._ws.artifacts.get_bytes(found.digest)

    def _experiment_ids(self, session: sa.orm.Session, names: builtins.list[str]) -> builtins.list[str]:
        found = {
            name: id_
            for name, id_ in session.execute(
                sa.select(ExperimentRow.name, ExperimentRow.id).where(ExperimentRow.name.in_(names))
            )
        }
        for name in names:
            if name not in found:
                known = session.scalars(sa.select(ExperimentRow.name)).all()
                raise NotFound(f"No experiment named {name!r}.{did_you_mean(name, known)}", experiment=name)
        return builtins.list(found.values())


def _history(key: str, parts: builtins.list[tuple[bytes, int]]) -> builtins.list[Metric]:
    """A metric's points from its chunks: by step, then time, then the order they were logged."""
    return [Metric(key, value, step, from_micros(stamp)) for step, stamp, _, value in points(parts)]


def _hydrate(session: sa.orm.Session, run_ids: list[str]) -> list[Run]:
    """Whole runs for these ids, in the same order, in six queries whatever their number."""
    if not run_ids:
        return []
    rows = {
        row.id: (row, experiment)
        for row, experiment in session.execute(
            sa.select(RunRow, ExperimentRow.name)
            .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
            .where(RunRow.id.in_(run_ids))
        )
    }
    params: dict[str, dict[str, str]] = {i: {} for i in rows}
    for run_id, key, text in session.execute(
        sa.select(RunParamRow.run_id, RunParamRow.key, RunParamRow.value).where(RunParamRow.run_id.in_(rows))
    ):
        params[run_id][key] = text
    tags: dict[str, dict[str, str]] = {i: {} for i in rows}
    for run_id, key, text in session.execute(
        sa.select(RunTagRow.run_id, RunTagRow.key, RunTagRow.value).where(RunTagRow.run_id.in_(rows))
    ):
        tags[run_id][key] = text
    metrics: dict[str, dict[str, float]] = {i: {} for i in rows}
    for run_id, key, value in session.execute(
        sa.select(RunLatestMetricRow.run_id, RunLatestMetricRow.key, RunLatestMetricRow.value)
        .where(RunLatestMetricRow.run_id.in_(rows))
        .order_by(RunLatestMetricRow.key)
    ):
        metrics[run_id][key] = value
    artifacts: dict[str, list[Artifact]] = {i: [] for i in rows}
    for a in session.scalars(
        sa.select(RunArtifactRow).where(RunArtifactRow.run_id.in_(rows)).order_by(RunArtifactRow.path)
    ):
        artifacts[a.run_id].append(Artifact(a.path, a.digest, a.size, a.media_type))
    inputs, outputs = _lineage_refs(session, list(rows))
    result = []
    for run_id in run_ids:
        if run_id not in rows:
            continue
        row, experiment = rows[run_id]
        result.append(
            Run(
                id=row.id,
                experiment=experiment,
                name=row.name,
                status=row.status,
                started_at=row.started_at,
                ended_at=row.ended_at,
                created_by=row.created_by,
                parent_run_id=row.parent_run_id,
                params=params[run_id],
                metrics=metrics[run_id],
                tags=tags[run_id],
                artifacts=artifacts[run_id],
                inputs=inputs.get(run_id, []),
                outputs=outputs.get(run_id, []),
                error=row.error,
            )
        )
    return result


def _lineage_refs(session: sa.orm.Session, run_ids: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Per run: the data versions it read (``name:3``) and the model versions it produced."""
    from conveyor.store._schema import ModelRow, ModelVersionRow

    inputs = run_inputs(session, run_ids)
    outputs: dict[str, list[str]] = {}
    for run_id, name, version in session.execute(
        sa.select(LineageEdgeRow.from_id, ModelRow.name, ModelVersionRow.version)
        .join(ModelVersionRow, ModelVersionRow.id == LineageEdgeRow.to_id)
        .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
        .where(
            LineageEdgeRow.from_kind == "run",
            LineageEdgeRow.to_kind == "model_version",
            LineageEdgeRow.from_id.in_(run_ids),
        )
        .order_by(ModelRow.name, ModelVersionRow.version)
    ):
        outputs.setdefault(run_id, []).append(f"{name}:{version}")
    return inputs, outputs


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or len(key) > 250:
        raise BadInput(f"Key {key!r} must be text of 1-250 characters.")
    return key


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    if len(text) > 8000:
        raise BadInput(f"A parameter value may hold at most 8000 characters; got {len(text)}.")
    return text


def _metric_value(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"Metric {key!r} must be a number, got {value!r}.") from exc
    if not math.isfinite(number):
        raise BadInput(f"Metric {key!r} is {number}; only finite numbers are stored. Log a finite value.")
    return number
