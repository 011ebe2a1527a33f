"""Batch scoring: a registered model version over a data version, in parallel chunks, into a new data version.

``ws.batch.score("churn@champion", "churn_new@latest", output="churn_scored")`` plans chunks along the
input's Parquet row groups, runs one task per chunk on an executor of the pipelines package (local worker
processes, ``dask-local`` or ``dask://HOST:PORT``), and commits the chunks' Parquet parts as one new version
only when every chunk is done and the share of rows the model could not score is within the threshold.

- Output columns: the input's columns, then ``prediction``; for classifiers with ``predict_proba`` also
  ``probability`` (of ``classes_[1]``) for two classes, or ``probability_<class>`` per class for more; then
  ``error`` (null, or why the model could not score that row; its prediction is null).
- A chunk whose rows make the model raise is split in halves until the failing rows are isolated (few
  failures cost a few extra ``predict`` calls; a chunk that is mostly bad is stopped once it alone exceeds the
  threshold).
- Finished chunks are recorded under ``<home>/batch/<job key>/``; the key hashes the model version, the input
  version, the output name and the chunk size, so re-running the same job after a crash skips them.
- The output version's lineage: ``data_version --derived--> data_version`` (input to output) and
  ``model_version --scored--> data_version``, both written in the transaction that creates the version.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import BadInput, UserCodeError, ValidationFailed, did_you_mean
from conveyor.refs import validate_name

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from conveyor.data import DataVersion
    from conveyor.pipelines import Executor
    from conveyor.registry import ModelVersion
    from conveyor.workspace import Workspace

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "BatchProgress",
    "BatchResult",
    "BatchScoring",
    "ScoringFailed",
]

#: Rows per chunk unless told otherwise: large enough that per-task overhead is noise, small enough that a
#: chunk of a wide table stays well within a worker's memory.
DEFAULT_CHUNK_ROWS = 250_000
#: The output columns Conveyor adds (a probability column per class is added for multi-class models).
PREDICTION, PROBABILITY, ERROR = "prediction", "probability", "error"
#: The lineage relation from the model version to the scored data version.
SCORED = "scored"
_PROBE_ROWS = 256
_WARM_UP = "warm-up-"
#: What the pipelines' local executor preloads in its fork server (``LocalExecutor.start``); batch adds the
#: model libraries.
_LOCAL_PRELOAD = ["conveyor.pipelines._task", "pandas", "pyarrow.parquet"]
_ERROR_SAMPLES = 5
_MESSAGE_CHARS = 300
#: Final estimators whose ``predict`` is by definition ``classes_[argmax(predict_proba)]``: for them the
#: prediction is derived from the probabilities instead of running the model a second time.
_ARGMAX_PREDICTORS = frozenset(
    {
        "AutoMLModel",
        "DecisionTreeClassifier",
        "ExtraTreeClassifier",
        "ExtraTreesClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "KNeighborsClassifier",
        "LGBMClassifier",
        "LogisticRegression",
        "RandomForestClassifier",
        "XGBClassifier",
    }
)


class ScoringFailed(ValidationFailed):
    """More rows than the error threshold allows could not be scored; no version was written."""

    code = "scoring_failed"


@dataclass(frozen=True)
class BatchProgress:
    """Where a job stands, passed to the ``progress`` callback after each finished chunk."""

    chunks_done: int
    chunks: int
    rows_done: int
    rows: int
    failed_rows: int
    skipped_chunks: int


@dataclass(frozen=True)
class BatchResult:
    """What a batch scoring job produced.

    Attributes:
        output: the new data version, ``name:version``.
        output_id: its id.
        model: the model version scored with, ``name:version``.
        data: the input data version, ``name:version``.
        rows: rows scored (failed ones included).
        chunks: chunks in the job.
        skipped_chunks: chunks a previous, interrupted run of the same job had finished.
        failed_rows: rows the model could not score (their prediction is null, ``error`` says why).
        seconds: wall time of this call.
        rows_per_second: ``rows / seconds``.
        executor: where the chunks ran.
        created: false when the output's latest version already held exactly this content.
        errors: up to five distinct reasons rows failed.
    """

    output: str
    output_id: str
    model: str
    data: str
    rows: int
    chunks: int
    skipped_chunks: int
    failed_rows: int
    seconds: float
    rows_per_second: float
    executor: str
    created: bool
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Segment:
    """Rows of one input part: whole row groups, then a slice of them."""

    digest: str
    row_groups: tuple[int, ...]
    offset: int
    length: int


@dataclass(frozen=True)
class _Outputs:
    """How predictions are computed and typed, decided once by the coordinator on a probe of the data.

    ``mode``: ``predict`` (``predict`` only), ``derived`` (``predict_proba``, prediction by argmax) or ``both``
    (``predict`` and ``predict_proba``).
    """

    mode: str
    classes: tuple[Any, ...]
    probability_columns: tuple[str, ...]
    schema: pa.Schema


@dataclass(frozen=True)
class _Limits:
    rows: int
    threshold: float
    max_failed: int
    retries: int


@dataclass(frozen=True)
class _ChunkTask:
    """Everything one chunk needs in a worker, in picklable form."""

    index: int
    segments: tuple[_Segment, ...]
    model_version_id: str
    model_ref: str
    features: tuple[str, ...]
    outputs: _Outputs
    max_failed: int
    threads: int


# -- the service -------------------------------------------------------------------------------------


class BatchScoring:
    """Batch scoring, reached as ``ws.batch``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def score(
        self,
        model: str,
        data: str,
        *,
        output: str,
        executor: str = "local",
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        error_threshold: float = 0.01,
        retries: int = 2,
        progress: Callable[[BatchProgress], None] | None = None,
        trusted_only: bool = False,
    ) -> BatchResult:
        """Score data version ``data`` with model version ``model`` into a new version of asset ``output``.

        Args:
            model: ``name``, ``name:3`` or ``name@alias``.
            data: ``name``, ``name@latest`` or ``name:3``.
            output: the asset that receives the scored rows as a new version.
            executor: ``local`` (a process per core), ``local:N``, ``dask-local`` or ``dask://HOST:PORT``.
            chunk_rows: rows per chunk (chunks follow the input's row groups, so they may be smaller).
            error_threshold: the largest share of rows (0 to 1) allowed to fail before the job fails.
            retries: how many times a chunk whose task failed is tried again.
            progress: called after every finished chunk.
            trusted_only: for callers from elsewhere (the REST API): only ``local`` / ``local:N`` with a bounded
                N, never a Dask scheduler the caller names (it could send this process pickles).

        Raises:
            InvalidReference: ``output`` is not a valid asset name, or a reference does not parse.
            BadInput: ``chunk_rows``, ``error_threshold`` or ``retries`` is out of range, the executor is
                unknown, or the input has no rows.
            NotFound: the model, its version or alias, or the data version does not exist.
            ValidationFailed: the data lacks a column the model takes, or already has an output column.
            ScoringFailed: more rows than ``error_threshold`` allows could not be scored (nothing is written).
            UserCodeError: a chunk failed ``retries + 1`` times (the model raised on the whole chunk, or its
                worker died).
            StoreUnavailable: the Dask scheduler cannot be reached.
        """
        started = time.perf_counter()
        validate_name(output, "data asset")
        _check_options(chunk_rows, error_threshold, retries)
        version = self._ws.models.get(model)
        source = self._ws.data.get(data)
        if source.rows == 0:
            raise BadInput(f"Data version {source.ref} has no rows; there is nothing to score.", data=source.ref)
        job = _Job(self._ws.settings.home / "batch" / _job_key(version.id, source.id, output, chunk_rows))
        max_failed = math.floor(error_threshold * source.rows)
        runner = make_executor_for(executor, trusted_only=trusted_only)
        runner.start()
        try:
            # Workers load the model while this process loads it to check the columns and probe the output types.
            _warm_up(self._ws, runner, job, version.id)
            fitted = self._ws.models.load(version)
            features = _features(fitted, version, source)
            segments = self._plan(source, chunk_rows)
            outputs = _decide_outputs(fitted, self._read(segments[0]), features, source, version)
            done = job.finished(self._ws, len(segments))
            threads = max(1, (os.cpu_count() or 1) // max(1, runner.capacity))
            tasks = {
                i: _ChunkTask(i, seg, version.id, version.ref, features, outputs, max_failed, threads)
                for i, seg in enumerate(segments)
                if i not in done
            }
            job.describe(version, source, output, chunk_rows, len(segments))
            limits = _Limits(source.rows, error_threshold, max_failed, retries)
            results = _run_chunks(self._ws, runner, tasks, done, job, limits, progress)
        finally:
            runner.close()
        failed = sum(int(r["failed"]) for r in results.values())
        errors = list(dict.fromkeys(e for r in results.values() for e in r.get("errors", [])))[:_ERROR_SAMPLES]
        if failed > max_failed:
            raise _too_many_failures(failed, source.rows, error_threshold, errors, job.path)
        files = [{k: results[i][k] for k in ("digest", "rows", "bytes")} for i in range(len(segments))]
        scored, created = self._commit(files, version, source, output, chunk_rows, failed)
        job.remove()
        seconds = time.perf_counter() - started
        return BatchResult(
            output=scored.ref,
            output_id=scored.id,
            model=version.ref,
            data=source.ref,
            rows=source.rows,
            chunks=len(segments),
            skipped_chunks=len(done),
            failed_rows=failed,
            seconds=seconds,
            rows_per_second=source.rows / seconds if seconds > 0 else 0.0,
            executor=runner.name,
            created=created,
            errors=errors,
        )

    def job_path(self, model: str, data: str, *, output: str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Path:
        """The folder where a job's finished chunks are recorded until its version is committed.

        Raises:
            NotFound: the model or data version does not exist.
        """
        version = self._ws.models.get(model)
        source = self._ws.data.get(data)
        return self._ws.settings.home / "batch" / _job_key(version.id, source.id, output, chunk_rows)

    # -- internals -----------------------------------------------------------------------------------

    def _plan(self, source: DataVersion, chunk_rows: int) -> list[tuple[_Segment, ...]]:
        """Chunks of about ``chunk_rows`` rows made of whole row groups; a row group larger than a chunk is
        split into slices (each slice re-reads its row group, so pick chunks no smaller than row groups)."""
        import pyarrow.parquet as pq

        chunks: list[tuple[_Segment, ...]] = []
        current: list[_Segment] = []
        current_rows = 0
        for part in source.files:
            if int(part["rows"]) == 0:
                continue
            with self._ws.artifacts.local_file(part["digest"]) as path:
                meta = pq.read_metadata(path)
            for group in range(meta.num_row_groups):
                group_rows = meta.row_group(group).num_rows
                if group_rows > chunk_rows:
                    if current:
                        chunks.append(tuple(current))
                        current, current_rows = [], 0
                    for offset in range(0, group_rows, chunk_rows):
                        length = min(chunk_rows, group_rows - offset)
                        chunks.append((_Segment(part["digest"], (group,), offset, length),))
                    continue
                if current_rows + group_rows > chunk_rows and current:
                    chunks.append(tuple(current))
                    current, current_rows = [], 0
                last = current[-1] if current else None
                if last is not None and last.digest == part["digest"] and last.offset == 0:
                    current[-1] = _Segment(last.digest, (*last.row_groups, group), 0, last.length + group_rows)
                else:
                    current.append(_Segment(part["digest"], (group,), 0, group_rows))
                current_rows += group_rows
        if current:
            chunks.append(tuple(current))
        return chunks

    def _read(self, segments: tuple[_Segment, ...]) -> pa.Table:
        return _read_segments(self._ws, segments)

    def _commit(
        self,
        files: list[dict[str, Any]],
        version: ModelVersion,
        source: DataVersion,
        output: str,
        chunk_rows: int,
        failed: int,
    ) -> tuple[DataVersion, bool]:
        """Record the version with both lineage edges (input data and model) in one transaction."""
        before = self._ws.data.versions(output) if output in {a.name for a in self._ws.data.list()} else []
        scored = self._ws.data.commit_stored(
            files,
            name=output,
            source={
                "kind": "batch-score",
                "model": version.ref,
                "model_version_id": version.id,
                "data": source.ref,
                "chunk_rows": chunk_rows,
                "failed_rows": failed,
            },
            parents=[source.id],
            description=f"{source.name} scored by {version.name}",
            # Profiled on demand (conveyor data profile), as append versions are: a profile of every
            # column of a large scored version costs a sizeable share of the scoring itself.
            profile=False,
            edges=[("model_version", version.id, SCORED)],
        )
        return scored, scored.id not in {v.id for v in before}


def make_executor_for(spec: str, *, trusted_only: bool = False) -> Executor:
    """The pipelines package's executor for ``spec`` (``local`` means one worker process per core).

    Raises:
        BadInput: an unknown executor name.
        Forbidden: with ``trusted_only``, anything but a bounded local pool.
    """
    from conveyor.pipelines import make_executor

    return make_executor(spec, trusted_only=trusted_only)


# -- the job folder (resume) --------------------------------------------------------------------------


class _Job:
    """A job's folder: one JSON record per finished chunk, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def finished(self, ws: Workspace, chunks: int) -> dict[int, dict[str, Any]]:
        """Chunks a previous run finished whose parts are still stored."""
        done: dict[int, dict[str, Any]] = {}
        if not self.path.is_dir():
            return done
        for record in self.path.glob("chunk-*.json"):
            try:
                entry = json.loads(record.read_text(encoding="utf-8"))
                index = int(entry["index"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if 0 <= index < chunks and ws.artifacts.exists(entry["digest"]):
                done[index] = entry
        return done

    def describe(self, version: ModelVersion, source: DataVersion, output: str, chunk_rows: int, chunks: int) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        about = {"model": version.ref, "data": source.ref, "output": output, "chunk_rows": chunk_rows, "chunks": chunks}
        _write_atomic(self.path / "job.json", about)

    def record(self, entry: dict[str, Any]) -> None:
        _write_atomic(self.path / f"chunk-{int(entry['index']):06d}.json", entry)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_atomic(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    tmp.replace(path)


def _job_key(model_version_id: str, data_version_id: str, output: str, chunk_rows: int) -> str:
    joined = "\n".join([model_version_id, data_version_id, output, str(chunk_rows)])
    return hashlib.sha256(joined.encode()).hexdigest()[:20]


# -- running the chunks -------------------------------------------------------------------------------


def _run_chunks(
    ws: Workspace,
    runner: Executor,
    tasks: dict[int, _ChunkTask],
    done: dict[int, dict[str, Any]],
    job: _Job,
    limits: _Limits,
    progress: Callable[[BatchProgress], None] | None,
) -> dict[int, dict[str, Any]]:
    """Submit every pending chunk, retry failed tasks, record finished ones; return all chunks' results.

    Raises:
        ScoringFailed: the failed rows already exceed the threshold (the remaining chunks are abandoned).
        UserCodeError: a chunk failed every attempt.
    """
    results = dict(done)
    attempts: dict[int, int] = {}
    chunks = len(tasks) + len(done)

    def submit(index: int) -> None:
        attempts[index] = attempts.get(index, 0) + 1
        _submit(ws, runner, job, str(index), functools.partial(score_chunk, tasks[index]), attempts[index])

    def report() -> None:
        if progress is not None:
            progress(
                BatchProgress(
                    chunks_done=len(results),
                    chunks=chunks,
                    rows_done=sum(int(r["rows"]) for r in results.values()),
                    rows=limits.rows,
                    failed_rows=sum(int(r["failed"]) for r in results.values()),
                    skipped_chunks=len(done),
                )
            )

    report()
    for index in sorted(tasks):
        submit(index)
    pending = set(tasks)
    while pending:
        for key, outcome in runner.poll(0.5):
            if key.startswith(_WARM_UP):
                continue
            index = int(key)
            value = (outcome.output or {}).get("value") if outcome.ok else None
            if not isinstance(value, dict):
                if attempts[index] <= limits.retries:
                    submit(index)
                    continue
                raise UserCodeError(
                    f"Chunk {index} failed {attempts[index]} times; last error: {outcome.error}. Its worker could "
                    f"not load {tasks[index].model_ref}, read the chunk or store the result, or it died; the "
                    "traceback is in the details. Finished chunks are kept: re-run the job once this is fixed.",
                    chunk=index,
                    traceback=outcome.traceback,
                )
            pending.discard(index)
            results[index] = value
            if value.get("digest") is not None:
                job.record(value)
            failed = sum(int(r["failed"]) for r in results.values())
            if failed > limits.max_failed:
                errors = list(dict.fromkeys(e for r in results.values() for e in r.get("errors", [])))
                raise _too_many_failures(failed, limits.rows, limits.threshold, errors, job.path)
            report()
    return results


def _submit(ws: Workspace, runner: Executor, job: _Job, key: str, function: Callable[[], Any], attempt: int) -> None:
    """Run ``function`` on the executor as a pipelines task (which opens the workspace once per worker)."""
    import cloudpickle

    from conveyor.pipelines._task import StepTask

    settings = {
        "home": str(ws.settings.home),
        "db_url": ws.settings.db_url,
        "artifacts_url": ws.settings.artifacts_url,
        "options": dict(ws.settings.artifacts_options),
    }
    step = StepTask(
        run_id=job.path.name,
        node=key,
        attempt=attempt,
        function=cloudpickle.dumps(function),
        sql=None,
        inputs={},
        params={},
        settings=settings,
    )
    runner.submit(key, step)


def _warm_up(ws: Workspace, runner: Executor, job: _Job, model_version_id: str) -> None:
    """Start every worker and have it load the model (a failure here resurfaces in the chunks, with retries)."""
    from conveyor.pipelines import LocalExecutor

    if isinstance(runner, LocalExecutor):
        import multiprocessing

        # Forked workers inherit these imports from the fork server instead of each paying for them.
        multiprocessing.get_context("forkserver").set_forkserver_preload([*_LOCAL_PRELOAD, "sklearn.base", "skops.io"])
    for i in range(runner.capacity):
        _submit(ws, runner, job, f"{_WARM_UP}{i}", functools.partial(load_model_once, model_version_id), 1)


def _too_many_failures(failed: int, rows: int, threshold: float, errors: list[str], path: Path) -> ScoringFailed:
    reasons = "; ".join(errors[:_ERROR_SAMPLES]) or "unknown"
    return ScoringFailed(
        f"{failed:,} of {rows:,} rows ({failed / rows:.2%}) could not be scored, above the error threshold of "
        f"{threshold:.2%}; no version was written. Reasons: {reasons}. Fix those rows in the data, or allow more "
        "with --error-threshold (finished chunks are kept, so re-running the job skips them).",
        failed_rows=failed,
        rows=rows,
        error_threshold=threshold,
        errors=errors[:_ERROR_SAMPLES],
        job=str(path),
    )


# -- what a worker runs -------------------------------------------------------------------------------

#: Models loaded in this worker process, by version id: each worker loads (and verifies) a model once.
_MODELS: dict[str, Any] = {}


class _OverThreshold(Exception):
    """A chunk alone has more failed rows than the whole job may have; it stops early."""


def load_model_once(model_version_id: str) -> None:
    """The model in this worker, loaded (and its hash verified) on first use."""
    from conveyor.pipelines import current_step

    model = _MODELS.get(model_version_id)
    if model is None:
        ws = current_step().workspace
        model = ws.models.load(ws.models.get_by_id(model_version_id))
        _MODELS[model_version_id] = model


def score_chunk(task: _ChunkTask) -> dict[str, Any]:
    """Score one chunk in a worker and store its Parquet part; returns the part and the failed rows.

    Raises:
        ConveyorError: the model cannot be loaded or the part cannot be stored (the coordinator retries).
    """
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from conveyor.pipelines import current_step

    ws = current_step().workspace
    load_model_once(task.model_version_id)
    model = _MODELS[task.model_version_id]
    table = _read_segments(ws, task.segments)
    # Workers share the cores: a model's own thread pool (OpenMP, BLAS) gets its share of them, no more.
    with threadpool_limits(limits=task.threads):
        try:
            columns, failed, errors = _score(model, table, task.features, task.outputs, task.max_failed)
        except _OverThreshold as exc:
            return {"index": task.index, "rows": table.num_rows, "failed": int(str(exc)), "digest": None, "errors": []}
    scored = _assemble(table, columns, task.outputs.schema)
    scratch = ws.artifacts.scratch_dir()
    try:
        part = scratch / "part.parquet"
        _write_part(scored, part)
        blob = ws.artifacts.adopt_file(part)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if ws.artifacts.is_local:
        # Committing the version reads every part through the verified path; hashing here, in parallel
        # workers, spares the single committing process from re-hashing all of them one after another.
        ws.artifacts.verified_path(blob.digest)
    return {
        "index": task.index,
        "digest": blob.digest,
        "rows": scored.num_rows,
        "bytes": blob.size,
        "failed": failed,
        "errors": errors,
    }


def _write_part(table: pa.Table, path: Path) -> None:
    """Write a part in the lake's codec. Dictionary encoding only for text columns: on numbers it rarely pays
    and it made writing several times slower than computing the predictions it stores."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.data._formats import PARQUET_COMPRESSION

    text = [
        f.name
        for f in table.schema
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type) or pa.types.is_binary(f.type)
    ]
    pq.write_table(table, path, compression=PARQUET_COMPRESSION, use_dictionary=text or False, write_statistics=True)


def _read_segments(ws: Workspace, segments: tuple[_Segment, ...]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for segment in segments:
        with ws.artifacts.local_file(segment.digest) as path:
            table = pq.ParquetFile(path).read_row_groups(list(segment.row_groups))
        tables.append(table.slice(segment.offset, segment.length))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _predict(model: Any, frame: pd.DataFrame, outputs: _Outputs) -> tuple[np.ndarray[Any, Any], Any]:
    import numpy as np

    if outputs.mode == "predict":
        return np.asarray(model.predict(frame)), None
    proba = np.asarray(model.predict_proba(frame))
    if outputs.mode == "derived":
        return np.asarray(outputs.classes)[proba.argmax(axis=1)], proba
    return np.asarray(model.predict(frame)), proba


def _score(
    model: Any, table: pa.Table, features: tuple[str, ...], outputs: _Outputs, max_failed: int
) -> tuple[list[pa.Array], int, list[str]]:
    """The output columns for ``table``'s rows, the number of rows that failed, and their distinct reasons.

    Raises:
        _OverThreshold: more than ``max_failed`` rows failed in this chunk alone.
    """
    import numpy as np
    import pyarrow as pa

    frame = table.select(list(features)).to_pandas()
    pieces: list[tuple[int, int, np.ndarray[Any, Any], Any]] = []
    failures: dict[int, str] = {}

    def attempt(lo: int, hi: int) -> None:
        try:
            prediction, proba = _predict(model, frame.iloc[lo:hi], outputs)
        except Exception as exc:  # any exception of the model marks rows as failed
            if hi - lo == 1:
                failures[lo] = _reason(exc)
                if len(failures) > max_failed:
                    raise _OverThreshold(str(len(failures))) from exc
                return
            # Halving isolates the bad rows with a few extra calls when they are rare.
            mid = (lo + hi) // 2
            attempt(lo, mid)
            attempt(mid, hi)
            return
        pieces.append((lo, hi, prediction, proba))

    attempt(0, len(frame))
    n = len(frame)
    schema = outputs.schema
    prediction_type = schema.field(PREDICTION).type
    if len(pieces) == 1 and not failures:
        _, _, prediction, proba = pieces[0]
        columns = [_typed(prediction, None, prediction_type)]
        columns += _probability_columns(proba, None, outputs, n)
        columns.append(pa.nulls(n, pa.string()))
        return columns, 0, []
    mask = np.ones(n, dtype=bool)
    prediction_all = np.empty(n, dtype=object)
    proba_all = None if outputs.mode == "predict" else np.full((n, len(outputs.classes)), np.nan)
    for lo, hi, prediction, proba in pieces:
        mask[lo:hi] = False
        prediction_all[lo:hi] = prediction
        if proba_all is not None:
            proba_all[lo:hi] = proba
    errors = np.full(n, None, dtype=object)
    for row, reason in failures.items():
        errors[row] = reason
    columns = [_typed(prediction_all, mask, prediction_type)]
    columns += _probability_columns(proba_all, mask, outputs, n)
    columns.append(pa.array(errors, type=pa.string()))
    return columns, len(failures), list(dict.fromkeys(failures.values()))[:_ERROR_SAMPLES]


def _typed(values: np.ndarray[Any, Any], mask: np.ndarray[Any, Any] | None, type_: pa.DataType) -> pa.Array:
    import numpy as np
    import pyarrow as pa

    if mask is not None and mask.all():
        return pa.nulls(len(values), type_)
    if mask is not None:
        values = values.copy()
        fill = values[~mask][0]
        values[mask] = fill  # placeholders under the mask, so the array converts with one element type
        if pa.types.is_floating(type_) or pa.types.is_integer(type_) or pa.types.is_boolean(type_):
            values = values.astype(type_.to_pandas_dtype())
    array = pa.array(np.asarray(values), mask=mask)
    return array if array.type == type_ else array.cast(type_)


def _probability_columns(proba: Any, mask: Any, outputs: _Outputs, n: int) -> list[pa.Array]:
    import pyarrow as pa

    if not outputs.probability_columns:
        return []
    if len(outputs.classes) == 2:
        return [pa.array(proba[:, 1], type=pa.float64(), mask=mask)]
    return [pa.array(proba[:, i], type=pa.float64(), mask=mask) for i in range(len(outputs.classes))]


def _assemble(table: pa.Table, columns: list[pa.Array], schema: pa.Schema) -> pa.Table:
    added = schema.names[table.num_columns :]
    scored = table
    for name, column in zip(added, columns, strict=True):
        scored = scored.append_column(name, column)
    return scored.cast(schema) if scored.schema != schema else scored


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {str(exc).strip()}".splitlines()[0]
    return text[:_MESSAGE_CHARS]


# -- decided once, before any chunk runs ----------------------------------------------------------------


def _check_options(chunk_rows: int, error_threshold: float, retries: int) -> None:
    if chunk_rows < 1:
        raise BadInput(f"--chunk-rows must be at least 1, not {chunk_rows}.", chunk_rows=chunk_rows)
    if not 0.0 <= error_threshold <= 1.0 or math.isnan(error_threshold):
        raise BadInput(
            f"--error-threshold is a share of rows between 0 and 1 (0.01 allows 1%), not {error_threshold}.",
            error_threshold=error_threshold,
        )
    if retries < 0:
        raise BadInput(f"Retries must be 0 or more, not {retries}.", retries=retries)


def _features(model: Any, version: ModelVersion, source: DataVersion) -> tuple[str, ...]:
    """The columns the model takes (its signature, else the names it was fitted on, else every column).

    Raises:
        ValidationFailed: one of them is not in the data, or the data already has an output column.
    """
    names = [c["name"] for c in version.signature.get("inputs", [])]
    if not names:
        fitted = getattr(model, "feature_names_in_", None)
        names = [str(n) for n in fitted] if fitted is not None else list(source.columns)
    available = source.columns
    missing = [n for n in names if n not in available]
    if missing:
        raise ValidationFailed(
            f"Data version {source.ref} has no column {missing[0]!r}, which model {version.ref} takes"
            f"{f' (missing: {len(missing)} columns: ' + ', '.join(missing[:10]) + ')' if len(missing) > 1 else ''}."
            f"{did_you_mean(missing[0], available)} Its columns are: {', '.join(available)}. Score a data version "
            "with the columns the model was trained on.",
            missing=missing,
            data=source.ref,
            model=version.ref,
        )
    return tuple(names)


def _decide_outputs(
    model: Any, probe: pa.Table, features: tuple[str, ...], source: DataVersion, version: ModelVersion
) -> _Outputs:
    """Prediction mode, classes and the output schema, from the model and the first rows of the data.

    Raises:
        ValidationFailed: the data already has a column named like an output column.
    """
    import numpy as np
    import pyarrow as pa

    probe = probe.slice(0, _PROBE_ROWS)
    frame = probe.select(list(features)).to_pandas()
    classes = getattr(model, "classes_", None) if hasattr(model, "predict_proba") else None
    good, prediction = _good_rows(model, frame)
    mode = "predict"
    if classes is not None and len(classes) >= 2:
        try:
            proba = np.asarray(model.predict_proba(frame.iloc[good])) if len(good) else None
        except (AttributeError, NotImplementedError):
            proba = None
        except Exception:  # noqa: BLE001 - a model that predicts but fails on probabilities: predictions only
            proba = None
        if proba is not None and proba.ndim == 2 and proba.shape[1] == len(classes):
            derived = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
            same = bool(np.array_equal(derived.astype(str), np.asarray(prediction).astype(str)))
            mode = "derived" if same and _predicts_by_argmax(model) else "both"
        elif len(good) == 0:
            mode = "both"
    probability_columns: tuple[str, ...] = ()
    if mode != "predict" and classes is not None:
        probability_columns = (PROBABILITY,) if len(classes) == 2 else tuple(f"{PROBABILITY}_{c}" for c in classes)
    if prediction is not None and len(prediction):
        prediction_type = pa.array(np.asarray(prediction)).type
    elif classes is not None:
        prediction_type = pa.array(np.asarray(classes)).type
    else:
        prediction_type = pa.float64()
    if pa.types.is_null(prediction_type) or pa.types.is_large_string(prediction_type):
        prediction_type = pa.string()
    added = [PREDICTION, *probability_columns, ERROR]
    clash = [name for name in added if name in source.columns]
    if clash:
        raise ValidationFailed(
            f"Data version {source.ref} already has a column {clash[0]!r}, which batch scoring adds. Rename or "
            'drop it first (e.g. conveyor sql "SELECT * EXCLUDE (...) FROM ..." --save-as NAME).',
            column=clash[0],
            data=source.ref,
        )
    fields = [pa.field(PREDICTION, prediction_type)]
    fields += [pa.field(name, pa.float64()) for name in probability_columns]
    fields.append(pa.field(ERROR, pa.string()))
    schema = pa.schema([*probe.schema, *fields])
    return _Outputs(
        mode, tuple(_plain(c) for c in (classes if classes is not None else ())), probability_columns, schema
    )


def _good_rows(model: Any, frame: pd.DataFrame) -> tuple[list[int], Any]:
    """Positions of probe rows the model predicts, and its predictions for them."""
    import numpy as np

    try:
        return list(range(len(frame))), np.asarray(model.predict(frame))
    except Exception:  # noqa: BLE001 - some rows are bad: keep those that score one by one
        good: list[int] = []
        predictions: list[Any] = []
        for i in range(len(frame)):
            with contextlib.suppress(Exception):
                predictions.append(np.asarray(model.predict(frame.iloc[i : i + 1]))[0])
                good.append(i)
        return good, np.asarray(predictions) if predictions else None


def _predicts_by_argmax(model: Any) -> bool:
    final = model
    while hasattr(final, "steps"):  # a scikit-learn Pipeline predicts with its last step
        final = final.steps[-1][1]
    return type(final).__name__ in _ARGMAX_PREDICTORS and type(final).__module__.split(".")[0] in {
        "sklearn",
        "lightgbm",
        "xgboost",
        "conveyor",
    }


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (class labels travel to workers and into column names)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value
