"""Experiments and runs: parameters, metrics by step, tags, artifacts and inputs."""

from __future__ import annotations

import builtins
import math
import mimetypes
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.errors import BadInput, Conflict, NotFound, did_you_mean
from conveyor.governance import add_edge
from conveyor.refs import validate_name
from conveyor.store._helpers import lock_or_create
from conveyor.store._schema import (
    ExperimentRow,
    LineageEdgeRow,
    RunArtifactRow,
    RunMetricRow,
    RunParamRow,
    RunRow,
    RunTagRow,
    utcnow,
)

if TYPE_CHECKING:
    from conveyor.data import DataVersion
    from conveyor.store import Blob
    from conveyor.workspace import Workspace

__all__ = ["ActiveRun", "Artifact", "Metric", "Run", "RunStatus", "Tracking"]

RunStatus = str  # "running" | "finished" | "failed" | "killed"
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

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()


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
            Conflict: a parameter was already logged with another value.
        """
        text = {_check_key(k): _param_text(v) for k, v in params.items()}
        with self._ws.store.write() as session:
            existing = {
                r.key: r.value
                for r in session.scalars(
                    sa.select(RunParamRow).where(RunParamRow.run_id == self.id, RunParamRow.key.in_(text))
                )
            }
            for key, value in text.items():
                if key in existing:
                    if existing[key] != value:
                        raise Conflict(
                            f"Parameter {key!r} of run {self.id} is already {existing[key]!r}; parameters "
                            f"cannot change (got {value!r}). Log it under another key, or start a new run.",
                        )
                    continue
                session.add(RunParamRow(run_id=self.id, key=key, value=value))

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Record metric values at ``step``.

        Raises:
            BadInput: a value is not a finite number.
        """
        now = utcnow()
        rows = [
            RunMetricRow(
                run_id=self.id,
                key=_check_key(k),
                value=_metric_value(k, v),
                step=int(step),
                timestamp=now,
            )
            for k, v in metrics.items()
        ]
        with self._ws.store.write() as session:
            session.add_all(rows)

    def set_tag(self, key: str, value: Any) -> None:
        with self._ws.store.write() as session:
            session.merge(RunTagRow(run_id=self.id, key=_check_key(key), value=str(value)))

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
        with self._ws.store.write() as session:
            row = session.get(RunRow, self.id)
            if row is None:
                raise NotFound(f"Run {self.id} no longer exists.")
            row.status = status
            row.ended_at = utcnow()
            row.error = error
        self._ended = True

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

    def start(
        self,
        experiment: str = DEFAULT_EXPERIMENT,
        *,
        name: str = "",
        parent_run_id: str | None = None,
        tags: dict[str, Any] | None = None,
    ) -> ActiveRun:
        """Start a run in ``experiment`` (created on first use)."""
        validate_name(experiment, "experiment")
        with self._ws.store.write() as session:
            exp = lock_or_create(session, ExperimentRow, name=experiment, created_by=self._ws.actor)
            row = RunRow(
                experiment_id=exp.id,
                parent_run_id=parent_run_id,
                name=name,
                status="running",
                created_by=self._ws.actor,
            )
            session.add(row)
            session.flush()
            for key, value in (tags or {}).items():
                session.add(RunTagRow(run_id=row.id, key=_check_key(key), value=str(value)))
            run_id = row.id
        return ActiveRun(self, run_id, experiment)

    def get(self, run_id: str) -> Run:
        """The run with this id.

        Raises:
            NotFound: no run has that id.
        """
        with self._ws.store.read() as session:
            found = session.execute(
                sa.select(RunRow, ExperimentRow.name)
                .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
                .where(RunRow.id == run_id)
            ).first()
            if found is None:
                raise NotFound(
                    f"No run with id {run_id!r}. List runs with 'conveyor runs list'.",
                    run_id=run_id,
                )
            row, experiment = found
            params = {p.key: p.value for p in session.scalars(sa.select(RunParamRow).filter_by(run_id=run_id))}
            tags = {t.key: t.value for t in session.scalars(sa.select(RunTagRow).filter_by(run_id=run_id))}
            metrics: dict[str, float] = {}
            for m in session.scalars(
                sa.select(RunMetricRow).filter_by(run_id=run_id).order_by(RunMetricRow.step, RunMetricRow.id)
            ):
                metrics[m.key] = m.value
            artifacts = [
                Artifact(a.path, a.digest, a.size, a.media_type)
                for a in session.scalars(
                    sa.select(RunArtifactRow).filter_by(run_id=run_id).order_by(RunArtifactRow.path)
                )
            ]
            inputs = _input_refs(session, run_id)
            return Run(
                id=row.id,
                experiment=experiment,
                name=row.name,
                status=row.status,
                started_at=row.started_at,
                ended_at=row.ended_at,
                created_by=row.created_by,
                parent_run_id=row.parent_run_id,
                params=params,
                metrics=metrics,
                tags=tags,
                artifacts=artifacts,
                inputs=inputs,
                error=row.error,
            )

    def list(self, experiment: str | None = None, limit: int = 50) -> builtins.list[Run]:
        """The most recent runs (newest first), optionally of one experiment.

        Raises:
            NotFound: the experiment does not exist.
        """
        with self._ws.store.read() as session:
            query = sa.select(RunRow.id).order_by(RunRow.started_at.desc(), RunRow.id.desc()).limit(limit)
            if experiment is not None:
                exp_id = session.scalar(sa.select(ExperimentRow.id).filter_by(name=experiment))
                if exp_id is None:
                    names = session.scalars(sa.select(ExperimentRow.name)).all()
                    raise NotFound(f"No experiment named {experiment!r}.{did_you_mean(experiment, names)}")
                query = query.where(RunRow.experiment_id == exp_id)
            ids = session.scalars(query).all()
        return [self.get(i) for i in ids]

    def metric_history(self, run_id: str, key: str) -> builtins.list[Metric]:
        """Every logged value of metric ``key`` of a run, by step."""
        self.get(run_id)
        with self._ws.store.read() as session:
            return [
                Metric(m.key, m.value, m.step, m.timestamp)
                for m in session.scalars(
                    sa.select(RunMetricRow)
                    .filter_by(run_id=run_id, key=key)
                    .order_by(RunMetricRow.step, RunMetricRow.id)
                )
            ]

    def artifact_bytes(self, run_id: str, path: str) -> bytes:
        """The bytes of one artifact of a run (verified against its digest).

        Raises:
            NotFound: the run has no artifact at ``path``.
        """
        with self._ws.store.read() as session:
            row = session.get(RunArtifactRow, (run_id, path))
            if row is None:
                names = session.scalars(sa.select(RunArtifactRow.path).filter_by(run_id=run_id)).all()
                raise NotFound(f"Run {run_id} has no artifact {path!r}.{did_you_mean(path, names)}")
            digest = row.digest
        return self._ws.artifacts.get_bytes(digest)


def _input_refs(session: sa.orm.Session, run_id: str) -> list[str]:
    from conveyor.store._schema import DataAssetRow, DataVersionRow

    rows = session.execute(
        sa.select(DataAssetRow.name, DataVersionRow.version)
        .join(DataVersionRow, DataVersionRow.asset_id == DataAssetRow.id)
        .join(
            LineageEdgeRow,
            sa.and_(
                LineageEdgeRow.from_kind == "data_version",
                LineageEdgeRow.from_id == DataVersionRow.id,
                LineageEdgeRow.to_kind == "run",
                LineageEdgeRow.to_id == run_id,
            ),
        )
        .order_by(DataAssetRow.name)
    ).all()
    return [f"{name}:{version}" for name, version in rows]


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
