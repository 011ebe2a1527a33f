"""AutoML: learner and hyperparameter search with Optuna under a strictly enforced time budget.

The shape of one call (``ws.train.automl``):

1. a trial worker process is started at once (it imports the learners while the data is read);
2. the data is checked (target, task, classes), column kinds inferred, and the guardrails report made;
3. a test split is held out (10%, stratified) and the rest split for validation: k-fold cross-validation while
   the data is small for the budget (and below 20,000 rows; repeated three times with other shuffles on tiny
   data, whose single split the search would otherwise learn), else one 10% holdout;
4. the search starts from low-cost configurations, then each learner's defaults, then the boosting learners'
   lower-rate, more-trees points; then Optuna's TPE sampler proposes a learner and its hyperparameters. A
   configuration its learner's earlier trials predict to overrun what is left is not started. The worker fits
   fold after fold and reports each fold's score, which Optuna's median pruner may cut short (never after the
   last fold: one holdout's trials all complete); each trial is a child run;
5. a trial still running when the search's deadline comes is stopped by killing the worker process (and a
   trial longer than a third of the budget likewise, after which a fresh worker takes over); the search also
   stops after ``patience`` trials without improvement;
6. the out-of-fold predictions of the best trials and of each learner's best are combined by greedy ensemble
   selection (at most three members), kept if the ensemble beats the best single trial;
7. the chosen configuration(s) are refitted on every training row in the worker (one featuriser + learner
   per member): the search reserves the estimated time (from the trials' measured fit times) of the refit of
   what it would ship if it ended now, updated as trials finish, and a refit that would still overrun (or runs
   past the deadline: the worker is killed) leaves the model averaging the chosen trials' fold models; the
   run's ``refit`` tag says which;
8. the model is logged into the run (artifact ``model``: ``models register --run`` works later) and
   evaluated on the test split (metrics, charts, permutation importance until the deadline).
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from conveyor.errors import BadInput, NotFound, ValidationFailed, did_you_mean
from conveyor.train._guardrails import Guardrail, check_data, check_model
from conveyor.train._learners import LEARNERS, check_learners, cost_size, initial_points, suggest
from conveyor.train._metrics import MetricSpec, resolve_metric, score
from conveyor.train._sweep import SweepResult, SweepSpec, SweepTrial

if TYPE_CHECKING:
    from pathlib import Path

    from conveyor.data import DataVersion
    from conveyor.tracking import ActiveRun
    from conveyor.workspace import Workspace

__all__ = ["AutoMLResult", "Training", "TrialRecord", "automl"]

HOLDOUT_ABOVE = 20_000
# Cross-validation only while the data is small for the budget (FLAML's rule): rows × columns / 0.9 under
# 10M cells per hour of budget; above, one 10% holdout, so a 30 s search on 10k+ rows runs dozens of trials.
_CV_CELLS_PER_HOUR = 10_000_000
_CV_REPEATS = 3  # repeated k-fold on tiny data (below both limits, the cells scaled by the budget over 30 s)
_REPEAT_BELOW_ROWS = 2_000
_REPEAT_CELLS = 10_000
TASKS = ("classification", "regression", "forecasting")
FORECAST_LEARNERS = ("lightgbm", "hist_gb", "xgboost")  # gradient boosting over lag/rolling/calendar features
_TOP_K = 5
_MIN_ROWS = 20
# Learners use one thread by default: on a small, shared machine OpenMP's spinning threads made fits up to
# ten times slower than one thread (measured: HistGradientBoosting, LightGBM, XGBoost on 2 busy cores).
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass
class TrialRecord:
    """One trial of the search: its configuration, how it ended, and its validation score."""

    number: int
    learner: str
    params: dict[str, Any]
    state: str  # complete | pruned | failed | stopped
    score: float | None  # in the metric's own units
    fold_scores: list[float] = field(default_factory=list)
    seconds: float = 0.0
    run_id: str = ""
    error: str | None = None


@dataclass(frozen=True)
class AutoMLResult:
    """What a search found."""

    run_id: str
    task: str
    metric: str
    score: float
    test_metrics: dict[str, float]
    best_learner: str
    best_params: dict[str, Any]
    trials: list[TrialRecord]
    seconds: float
    time_budget: float
    stopped_because: str
    validation: str
    model: Any
    guardrails: list[Guardrail]
    column_kinds: dict[str, str]
    ensemble: dict[str, Any] | None
    example: pd.DataFrame
    feature_importance: list[dict[str, Any]]
    model_ref: str | None = None
    baseline: dict[str, Any] | None = None
    refit: str = "done"  # or "skipped (why)": the model averages the chosen trials' fold models instead

    @property
    def overrun_seconds(self) -> float:
        return max(0.0, self.seconds - self.time_budget)

    def to_json(self) -> dict[str, Any]:
        states = [t.state for t in self.trials]
        payload: dict[str, Any] = {
            "run_id": self.run_id,
            "metric": self.metric,
            "score": self.score,
            "best_learner": self.best_learner,
            "trials": len(self.trials),
            "seconds": round(self.seconds, 3),
            "task": self.task,
            "time_budget": self.time_budget,
            "test_metrics": self.test_metrics,
            "trials_by_state": {s: states.count(s) for s in ("complete", "pruned", "failed", "stopped")},
            "stopped_because": self.stopped_because,
            "validation": self.validation,
            "ensemble": self.ensemble,
            "refit": self.refit,
            "guardrails": [g.to_dict() for g in self.guardrails],
        }
        if self.baseline is not None:
            payload["baseline"] = self.baseline
        if self.model_ref:
            payload["model"] = self.model_ref
        return payload


ProgressCallback = Callable[[float, str], None]


class Training:
    """Training services, reached as ``ws.train``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def automl(self, data: str | DataVersion | pd.DataFrame, target: str, **options: Any) -> AutoMLResult:
        """Search learners and hyperparameters for ``target`` under a time budget; see :func:`automl`."""
        return automl(self._ws, data, target, **options)

    def sweep(
        self,
        spec: str | Path | SweepSpec,
        *,
        max_trials: int | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        executor: str | None = None,
        on_trial: Callable[[SweepTrial], None] | None = None,
    ) -> SweepResult:
        """Run a sweep file (or a loaded spec), optionally overriding its limits; see ``conveyor.train._sweep``.

        Raises:
            NotFound: the file does not exist.
            InvalidSpec: the file is not a valid sweep.
            BadInput: no trial produced a value.
        """
        import dataclasses

        from conveyor.train._sweep import load_sweep, run_sweep

        loaded = spec if isinstance(spec, SweepSpec) else load_sweep(spec)
        if max_trials is not None:
            loaded = dataclasses.replace(loaded, max_trials=max_trials)
        if concurrency is not None:
            loaded = dataclasses.replace(loaded, concurrency=concurrency)
        if timeout is not None:
            loaded = dataclasses.replace(loaded, timeout=timeout)
        if executor is not None:
            loaded = dataclasses.replace(loaded, executor=executor)
        return run_sweep(self._ws, loaded, on_trial=on_trial)


def automl(
    ws: Workspace,
    data: str | DataVersion | pd.DataFrame,
    target: str,
    *,
    task: str | None = None,
    metric: str | None = None,
    time_budget: float = 60.0,
    experiment: str = "automl",
    run_name: str = "",
    tags: dict[str, Any] | None = None,
    register: str | None = None,
    alias: str | None = None,
    exclude: tuple[str, ...] | list[str] = (),
    allow_leaks: tuple[str, ...] | list[str] = (),
    time_column: str | None = None,
    series_id: str | None = None,
    horizon: int | None = None,
    learners: list[str] | tuple[str, ...] | None = None,
    max_trials: int | None = None,
    patience: int = 100,
    folds: int = 5,
    test_size: float = 0.1,
    ensemble: bool = True,
    seed: int = 0,
    n_jobs: int = 1,
    progress: ProgressCallback | None = None,
) -> AutoMLResult:
    """Find the best model for ``target`` in ``data`` (a data reference like ``churn@latest``, a DataVersion,
    or a pandas DataFrame) within ``time_budget`` seconds, tracked as a run in ``experiment`` with one child
    run per trial; optionally register the winner as ``register`` (and point ``alias`` at it).

    The budget covers everything up to the evaluated model (starting the worker, reading the data, the
    search, ensembling and evaluation); registering comes after it.

    Raises:
        BadInput: a budget ≤ 0, an unknown metric or learner, a task that does not fit the target.
        NotFound: ``target`` (or an excluded column) is not a column; the data reference is unknown.
        ValidationFailed: empty or all-null data, too few labelled rows, a target with one class, a budget
            too small for any trial to finish.
    """
    started = time.monotonic()
    if not isinstance(time_budget, int | float) or not math.isfinite(time_budget) or time_budget <= 0:
        raise BadInput(f"The time budget must be a positive number of seconds; got {time_budget!r}. Try 60.")
    deadline = started + float(time_budget)
    if task is not None and task not in TASKS:
        raise BadInput(f"Unknown task {task!r}.{did_you_mean(task, TASKS)} Tasks: {', '.join(TASKS)}.", task=task)
    if folds < 2:
        raise BadInput(f"folds must be at least 2; got {folds}.")
    if not 0 <= test_size < 0.5:
        raise BadInput(f"test_size must be in [0, 0.5); got {test_size}.")
    if max_trials is not None and max_trials < 1:
        raise BadInput(f"max_trials must be at least 1; got {max_trials}.")
    if task == "forecasting" and not learners:
        learners = FORECAST_LEARNERS
    chosen_learners = check_learners(learners)
    threads = max(1, int(n_jobs or 1))
    pool = _WorkerPool(threads)
    pool.start()  # imports the learners while the data is read
    try:
        frame, version = _load(ws, data)
        if task == "forecasting":
            common = {
                "started": started,
                "deadline": deadline,
                "time_budget": float(time_budget),
                "learners": chosen_learners,
                "experiment": experiment,
                "run_name": run_name,
                "tags": tags or {},
                "register": register,
                "alias": alias,
                "max_trials": max_trials,
                "patience": patience,
                "use_ensemble": ensemble,
                "seed": seed,
                "n_jobs": threads,
                "progress": progress,
            }
            return _forecast(ws, pool, frame, version, target, time_column, series_id, horizon, metric, folds, common)
        x, y, task, kinds, dropped = _prepare(frame, target, task, exclude)
        spec = resolve_metric(metric, task)
        classes: list[Any] = []
        if task == "classification":
            codes, uniques = pd.factorize(y, sort=True)
            classes = list(uniques)
            y_codes = np.asarray(codes, dtype=int)
        else:
            y_codes = y.to_numpy(dtype=float)
        unknown = [c for c in allow_leaks if c not in x.columns]
        if unknown:
            hint = did_you_mean(unknown[0], list(x.columns))
            raise BadInput(f"--allow-leak names no feature column: {', '.join(unknown)}.{hint}")
        guardrails = check_data(x, y, kinds, task, dropped, allow_leaks)
        x = x.drop(columns=[c for c, k in kinds.items() if k == "ignored"])
        kinds = {c: k for c, k in kinds.items() if k != "ignored"}
        if not kinds:
            raise ValidationFailed(
                "No usable feature columns are left: every column is constant or an identifier. "
                "Add columns that describe each row."
            )
        dev, test = _test_split(len(x), y_codes, task, test_size, seed)
        x_dev, y_dev = x.iloc[dev].reset_index(drop=True), y_codes[dev]
        split, validation = _folds(x_dev, y_dev, task, folds, seed, float(time_budget))
        n_classes = len(classes)
        return _search_and_finish(
            ws,
            pool,
            started=started,
            deadline=deadline,
            time_budget=float(time_budget),
            version=version,
            target=target,
            task=task,
            spec=spec,
            x=x,
            y_codes=y_codes,
            classes=classes,
            n_classes=n_classes,
            kinds=kinds,
            guardrails=guardrails,
            dev=dev,
            test=test,
            split=split,
            validation=validation,
            learners=chosen_learners,
            experiment=experiment,
            run_name=run_name,
            tags=tags or {},
            register=register,
            alias=alias,
            max_trials=max_trials,
            patience=patience,
            use_ensemble=ensemble,
            seed=seed,
            n_jobs=threads,
            progress=progress,
        )
    finally:
        pool.close()


# -- input ---------------------------------------------------------------------------------------------


def _load(ws: Workspace, data: Any) -> tuple[pd.DataFrame, DataVersion | None]:
    if isinstance(data, pd.DataFrame):
        return data, None

    from conveyor.data import DataVersion

    version = data if isinstance(data, DataVersion) else ws.data.get(str(data))
    return ws.data.to_pandas(version), version


def _prepare(
    frame: pd.DataFrame, target: str, task: str | None, exclude: tuple[str, ...] | list[str]
) -> tuple[pd.DataFrame, pd.Series, str, dict[str, Any], int]:
    from conveyor.train._featurize import infer_column_kinds

    columns = [str(c) for c in frame.columns]
    if len(frame) == 0 or not columns:
        raise ValidationFailed("The data set is empty: it has no rows. Ingest data with rows first.")
    if frame.isna().all().all():
        raise ValidationFailed(f"Every value in the data set ({len(frame):,} rows) is missing; nothing to learn.")
    if target not in frame.columns:
        raise NotFound(
            f"No column {target!r} to predict.{did_you_mean(target, columns)} Columns are: {', '.join(columns)}.",
            target=target,
        )
    for name in exclude:
        if name not in frame.columns:
            raise NotFound(f"Cannot exclude {name!r}: no such column.{did_you_mean(name, columns)}", column=name)
    labelled = frame[frame[target].notna()]
    dropped = len(frame) - len(labelled)
    if len(labelled) < _MIN_ROWS:
        raise ValidationFailed(
            f"Only {len(labelled)} rows have a value for {target!r}; AutoML needs at least {_MIN_ROWS}.",
            target=target,
        )
    y = labelled[target]
    if y.nunique() < 2:
        raise ValidationFailed(
            f"Target {target!r} has a single value ({y.iloc[0]!r}) in all {len(y):,} labelled rows; nothing to "
            "learn. Check the column, or the filter that made the data.",
            target=target,
        )
    task = _check_task(y, target, task)
    if task == "classification":
        counts = y.value_counts()
        if counts.min() < 2:
            raise ValidationFailed(
                f"Class {counts.idxmin()!r} of {target!r} has a single row; every class needs at least 2 rows "
                "to be validated. Remove those rows or merge the class.",
                target=target,
            )
        y = y.astype(object) if pd.api.types.is_bool_dtype(y.dtype) else y
    x = labelled.drop(columns=[target, *exclude]).reset_index(drop=True)
    if x.shape[1] == 0:
        raise ValidationFailed(f"No feature columns are left besides {target!r}; AutoML needs at least one.")
    kinds = infer_column_kinds(x)
    return x, y.reset_index(drop=True), task, dict(kinds), dropped


def _check_task(y: pd.Series, target: str, task: str | None) -> str:
    """The task (inferred when not given), refusing one that does not fit the target."""
    numeric = pd.api.types.is_numeric_dtype(y.dtype) and not pd.api.types.is_bool_dtype(y.dtype)
    inferred = _infer_task(y)
    task = task or inferred
    if task == "regression" and not numeric:
        raise BadInput(
            f"Task 'regression' needs a numeric target, but {target!r} holds {y.dtype} values such as "
            f"{y.iloc[0]!r}. Use --task classification.",
            target=target,
        )
    if task == "classification" and numeric and inferred == "regression":
        fractional = bool((y.astype(float) % 1 != 0).any())
        if fractional or y.nunique() > 100:
            raise BadInput(
                f"Task 'classification' does not fit {target!r}: it is a continuous number with "
                f"{y.nunique():,} distinct values. Use --task regression (or bin the target into classes).",
                target=target,
            )
    return task


def _infer_task(y: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(y.dtype) or not pd.api.types.is_numeric_dtype(y.dtype):
        return "classification"
    if pd.api.types.is_integer_dtype(y.dtype) and y.nunique() <= 20:
        return "classification"
    if y.nunique() <= 10 and bool((y.astype(float) % 1 == 0).all()):
        return "classification"
    return "regression"


def _test_split(
    n: int, y: np.ndarray[Any, Any], task: str, test_size: float, seed: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from sklearn.model_selection import train_test_split

    everything = np.arange(n)
    if test_size == 0 or n < 100:
        return everything, everything[:0]
    stratify = y if task == "classification" and np.bincount(y).min() >= 4 else None
    dev, test = train_test_split(everything, test_size=test_size, random_state=seed, stratify=stratify)
    return np.sort(dev), np.sort(test)


def _folds(
    x: pd.DataFrame, y: np.ndarray[Any, Any], task: str, folds: int, seed: int, budget: float = 3600.0
) -> tuple[list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]], str]:
    """Cross-validation folds while the data is small for the budget (and under 20,000 rows), else one holdout."""
    from sklearn import model_selection as ms

    classification = task == "classification"
    large = len(x) * max(x.shape[1], 1) / 0.9 >= _CV_CELLS_PER_HOUR * budget / 3600
    if len(x) >= HOLDOUT_ABOVE or (large and len(x) >= 2_000):
        cls = ms.StratifiedShuffleSplit if classification else ms.ShuffleSplit
        split = list(cls(n_splits=1, test_size=0.1, random_state=seed).split(x, y))
        return split, f"holdout: 10% of {len(x):,} rows{' (stratified)' if classification else ''}"
    # Tiny data (a few thousand cells): one k-fold split is noisy enough that the search learns its folds (a
    # logistic regression pushed to C=100 was perfect on 89 rows' folds and confidently wrong on new rows);
    # repeating it with other shuffles costs little on such data and averages that noise out.
    repeats = _CV_REPEATS if len(x) < _REPEAT_BELOW_ROWS and len(x) * x.shape[1] <= _REPEAT_CELLS * budget / 30 else 1
    times = f"{repeats}x " if repeats > 1 else ""
    if classification:
        k = max(2, min(folds, int(np.bincount(y).min())))
        cv: Any = ms.RepeatedStratifiedKFold if repeats > 1 else ms.StratifiedKFold
        kwargs: dict[str, Any] = {"n_repeats": repeats} if repeats > 1 else {"shuffle": True}
        split = list(cv(n_splits=k, random_state=seed, **kwargs).split(x, y))
        return split, f"{times}{k}-fold cross-validation (stratified) on {len(x):,} rows"
    cv = ms.RepeatedKFold if repeats > 1 else ms.KFold
    kwargs = {"n_repeats": repeats} if repeats > 1 else {"shuffle": True}
    split = list(cv(n_splits=folds, random_state=seed, **kwargs).split(x, y))
    return split, f"{times}{folds}-fold cross-validation on {len(x):,} rows"


# -- the trial worker -----------------------------------------------------------------------------------


class _WorkerPool:
    """One trial worker process at a time (``python -m conveyor.train._worker``, talking over a socket pair), replaced
    when it is killed. A plain subprocess rather than multiprocessing's spawn: the caller's main module is not
    re-imported, so scripts need no ``if __name__ == "__main__"`` guard."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self.process: Any = None
        self.conn: Any = None
        self.payload: dict[str, Any] | None = None
        self.ready = False
        self.spare: tuple[Any, Any, float] | None = None  # process, connection, when it started
        self.spare_fed = False  # the spare was handed the data when it started
        self.started_at = 0.0
        self.startup_seconds = 2.0  # how long a worker takes to be ready: measured on the first one
        self.startup_measured = False

    def start(self) -> None:
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.train._worker", str(fd), str(os.getpid())],
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **{var: str(self.threads) for var in _THREAD_VARIABLES}},
        )
        theirs.close()
        self.process, self.conn, self.ready = process, Connection(ours.detach()), False
        self.started_at = time.monotonic()

    def send_data(self, payload: dict[str, Any]) -> None:
        """Hand the worker its data from a thread: the pipe blocks until the worker reads, and the worker reads
        only after its imports. Trials are sent after its "ready" answer, so sends never interleave."""
        self.payload = payload
        self._feed(self.conn, payload)

    @staticmethod
    def _feed(conn: Any, payload: dict[str, Any]) -> None:
        import threading

        def send() -> None:
            with contextlib.suppress(OSError, ValueError):  # the worker was killed meanwhile
                conn.send(("data", payload))

        threading.Thread(target=send, daemon=True, name="conveyor-automl-data").start()

    def wait_ready(self, deadline: float) -> bool:
        while not self.ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.conn.poll(remaining):
                return False
            if self.conn.recv()[0] == "ready":
                self.ready = True
                if not self.startup_measured:
                    self.startup_seconds, self.startup_measured = time.monotonic() - self.started_at, True
        return True

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(2)
        if self.conn is not None:
            self.conn.close()
        self.process, self.conn, self.ready = None, None, False

    def warm_spare(self) -> None:
        """Start a standby worker now, holding the data, so that replacing a killed one (during the search, or
        for the refit after it) costs no import time."""
        if self.spare is None:
            current = self.process, self.conn, self.started_at
            self.start()
            self.spare = (self.process, self.conn, self.started_at)
            self.spare_fed = self.payload is not None
            if self.payload is not None:
                self._feed(self.conn, self.payload)
            self.process, self.conn, self.started_at = current
            self.ready = True

    def restart(self) -> None:
        self.kill()
        fed = False
        if self.spare is not None:
            self.process, self.conn, self.started_at = self.spare
            fed, self.spare, self.spare_fed = self.spare_fed, None, False
            self.ready = False
        else:
            self.start()
        if self.payload is not None and not fed:
            self.send_data(self.payload)

    def close(self) -> None:
        # A worker not yet ready may still be taking its data from the feeding thread: a "quit" sent now would
        # block behind megabytes the worker reads only after its imports (and interleave with them). Kill it.
        if self.process is not None and self.process.poll() is None and self.conn is not None and self.ready:
            try:
                self.conn.send(("quit",))
                self.process.wait(0.2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        if self.spare is not None:
            self.process, self.conn, _ = self.spare
            self.spare = None
            self.kill()


# -- search ---------------------------------------------------------------------------------------------


def _search_and_finish(  # noqa: PLR0912, PLR0915
    ws: Workspace,
    pool: _WorkerPool,
    *,
    started: float,
    deadline: float,
    time_budget: float,
    version: DataVersion | None,
    target: str,
    task: str,
    spec: MetricSpec,
    x: pd.DataFrame,
    y_codes: np.ndarray[Any, Any],
    classes: list[Any],
    n_classes: int,
    kinds: dict[str, Any],
    guardrails: list[Guardrail],
    dev: np.ndarray[Any, Any],
    test: np.ndarray[Any, Any],
    split: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]],
    validation: str,
    learners: tuple[str, ...],
    experiment: str,
    run_name: str,
    tags: dict[str, Any],
    register: str | None,
    alias: str | None,
    max_trials: int | None,
    patience: int,
    use_ensemble: bool,
    seed: int,
    n_jobs: int,
    progress: ProgressCallback | None,
    forecast: Any = None,
) -> AutoMLResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    x_dev, y_dev = x.iloc[dev].reset_index(drop=True), y_codes[dev]
    y_val = np.concatenate([y_dev[v] for _, v in split])
    # What the end needs (ensemble, evaluation, charts, importance, logging) is reserved from the search. (Without
    # a test split the evaluation takes 0.2 s of it, but the rest is the margin a busy machine needs: reserving
    # half as much there left digits' 30 s search 0.5 s before its deadline, and 4% past it once.)
    # On a busy machine (more runnable processes than cores) the end runs slower by about as much as the search's
    # trials; the fixed parts of the reserve are scaled by it (the refit's estimates come from measured trials).
    busy = _busy_factor()
    reserve = busy * min(0.15 * time_budget, max(1.0, 0.06 * time_budget + 0.5 + 4e-6 * len(x)))
    end_deadline = deadline - reserve
    trial_cap = max(1.0, time_budget / 3)
    # The refit of the chosen configuration(s) on every row comes after the search, inside the budget: its
    # estimated time (from the trials' measured fit times) is reserved from the search as trials finish.
    train_rows = float(np.mean([len(t) for t, _ in split])) if split else float(len(dev))
    refit_scale = max(1.0, len(dev) / max(train_rows, 1.0)) / max(len(split), 1)
    kept: dict[int, dict[str, Any]] = {}  # top trials (and each learner's best): oof predictions and fold models
    choice: dict[int, float] = {}  # what would ship if the search ended now (trial: weight), kept up to date

    def search_deadline() -> float:
        # The search reserves the refit of exactly what would ship now (the best trial, or the ensemble the
        # greedy selection makes of the candidates), so the refit runs and no reserve is left unused.
        return end_deadline - _refit_reserve(kept, choice, refit_scale, busy)

    def refit_end(members: int) -> float:  # the refit ends in time to log the refitted model
        return end_deadline - busy * _log_estimate(members)

    def tick(message: str) -> None:
        if progress is not None:
            progress(time.monotonic() - started, message)

    shown_task = "forecasting" if forecast is not None else task
    tags = {**tags, "kind": "automl", "target": target, "task": shown_task}
    with ws.runs.start(experiment, name=run_name or f"automl-{target}", tags=tags) as parent:
        if version is not None:
            parent.log_input(version)
        parent.log_params(
            {
                "target": target,
                "task": shown_task,
                "metric": spec.name,
                "time_budget": time_budget,
                "validation": validation,
                "learners": ",".join(learners),
                "rows": len(x),
                "test_rows": len(test),
                "features": x.shape[1],
                "seed": seed,
                "patience": patience,
            }
        )
        parent.log_bytes("guardrails.json", _json([g.to_dict() for g in guardrails]))
        parent.log_bytes("column_kinds.json", _json(kinds))
        pool.send_data(
            {
                "x": x_dev,
                "y": y_dev,
                "folds": split,
                "kinds": kinds,
                "task": task,
                "n_classes": n_classes,
                "seed": seed,
                "n_jobs": n_jobs,
                "metric": spec,
            }
        )
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0),
        )
        for params in initial_points(learners, task):  # cheap first, then each learner's defaults
            study.enqueue_trial(params)
        records: list[TrialRecord] = []
        best = -math.inf
        since_best = 0
        skipped = 0  # configurations in a row not started: predicted to overrun what is left
        stopped_because = "time budget"
        tick("starting the trial worker")
        while True:
            if time.monotonic() >= search_deadline():
                break
            typical = float(np.median([r.seconds for r in records if r.state in ("complete", "stopped")] or [0.0]))
            if kept and time.monotonic() + typical >= search_deadline():
                break  # no trial would finish: keep the worker idle for the refit rather than kill it mid-trial
            if max_trials is not None and len(records) >= max_trials:
                stopped_because = f"max trials ({max_trials})"
                break
            if since_best >= patience:
                stopped_because = f"no improvement in {patience} trials"
                break
            if not pool.wait_ready(search_deadline()):
                break
            if records:  # a standby worker with the data: for a killed trial's successor, and for the refit
                if pool.spare is None and len(records) == 1:
                    _preload_model_store()  # after the first trial: the worker's own imports are done
                pool.warm_spare()
            trial = study.ask()
            config = suggest(trial, learners, task)
            # A configuration its learner's earlier trials say cannot finish in the time it may take (a forest of
            # 400 trees over every column: a minute on 15k rows) is not started: it would be killed at its cap
            # and waste the time. Told to Optuna as pruned, the sampler learns to propose cheaper ones.
            predicted = _predicted_seconds(records, config, len(split))
            if predicted is not None and predicted > min(trial_cap, search_deadline() - time.monotonic()):
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                skipped += 1
                since_best += 1
                if skipped >= _MAX_SKIPPED:
                    break
                continue
            skipped = 0
            record = TrialRecord(trial.number, config["learner"], config["params"], "stopped", None)
            with parent.child(f"trial-{trial.number}", tags={"learner": config["learner"]}) as child:
                record.run_id = child.id
                child.log_params({"learner": config["learner"], **config["params"]})
                keep_above = min(_kth_best(kept, _TOP_K), _learner_best(kept, config["learner"]))
                t0 = time.monotonic()
                pool.conn.send(("trial", trial.number, config, keep_above))
                cap = min(search_deadline(), t0 + trial_cap)
                outcome = _follow_trial(pool, trial, record, child, spec, cap, tick, len(split))
                record.seconds = time.monotonic() - t0
                child.log_metric("seconds", record.seconds)
                child.set_tag("state", record.state)
                if outcome is not None:
                    record.state, record.score = "complete", _unorient(spec, outcome["score"])
                    record.fold_scores = [_unorient(spec, s) for s in outcome["fold_scores"]]
                    child.log_metric(spec.name, record.score)
                    study.tell(trial, outcome["score"])
                    if outcome["score"] > best + 1e-9:
                        best, since_best = outcome["score"], 0
                    else:
                        since_best += 1
                    if outcome["models"] is not None:
                        kept[trial.number] = {**outcome, "learner": config["learner"]}
                        _prune(kept)
                        choice = _choose(kept, spec, y_val, use_ensemble)[0]
                elif record.state == "pruned":
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    since_best += 1
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    since_best += 1
                if record.state == "failed":
                    child.end("failed", error=record.error)
                elif record.state == "stopped":
                    child.end("killed", error="stopped: it ran past the time budget")
            records.append(record)
            tick(_status(records, spec))
            if record.state == "stopped" and time.monotonic() < search_deadline():
                pool.restart()
        if not kept and forecast is None:  # (forecasting falls back to its seasonal-naive baseline)
            raise ValidationFailed(
                f"No trial finished within the time budget of {time_budget:g} s "
                f"({len(records)} started). Give a larger --time-budget (the data has {len(x):,} rows).",
                time_budget=time_budget,
            )
        tick("ensembling the best trials")
        model: Any = None
        best_params: dict[str, Any] = {}
        best_learner, ensemble_info, val_score = "", None, -math.inf
        weights: dict[int, float] = {}
        if kept:
            model, best_learner, best_params, ensemble_info, val_score, weights = _final_model(
                kept, records, spec, task, y_val, classes, list(x.columns), use_ensemble, learners
            )
        oof_override = None
        baseline_info = None
        if forecast is not None:
            model, best_learner, best_params, val_score, oof_override, baseline_info = _against_baseline(
                forecast, model, best_learner, best_params, val_score, kept, ensemble_info, spec, split, y_val
            )
            level = np.concatenate([forecast.level[v] for _, v in split])
            y_val, oof_override = y_val + level, oof_override + level  # evaluated on the values themselves
            parent.log_metric(f"baseline_{spec.name}", baseline_info["score"])
            parent.log_bytes("baseline.json", _json(baseline_info))
        refit_note = "not needed (the seasonal-naive forecast is kept)"
        if weights and (forecast is None or (baseline_info is not None and baseline_info["beaten"])):
            tick("refitting the chosen model on every training row")
            by_number = {r.number: r for r in records}
            names = [by_number[n].learner for n in weights]
            configs = [{"learner": by_number[n].learner, "params": by_number[n].params} for n in weights]
            estimates = [_refit_estimate(kept[n], refit_scale) for n in weights]
            refitted, refit_note, refit_seconds = _refit(pool, configs, estimates, refit_end(len(configs)))
            if refitted is not None:
                members = [([m], w) for m, w in zip(refitted, weights.values(), strict=True)]
                shipped = _automl_model(task, members, classes, names, list(x.columns))
                if forecast is not None:
                    model.model = shipped
                else:
                    model = shipped
                parent.log_metric("refit_seconds", refit_seconds)
        pool.kill()
        inference = _compile(model, forecast, x.iloc[dev[:200]] if len(dev) else x.head(200), end_deadline)
        parent.log_metrics({f"validation_{spec.name}": val_score, "trials": float(len(records))})
        tags_end = {"best_learner": best_learner, "stopped_because": stopped_because, "refit": refit_note}
        parent.set_tags({**tags_end, "inference": inference})
        # The run keeps its model (artifact "model"), so it can be registered later: 'models register --run'.
        tick("logging the model into the run")
        example = forecast.history if forecast is not None else x.iloc[dev[:200]] if len(dev) else x.head(200)
        ws.models.log_model(
            parent.id,
            model,
            signature=_signature(model, example, shown_task),
            input_example=example,
            metrics={spec.name: val_score},
        )
        tick("evaluating the model")
        test_metrics, importance = _evaluate_and_log(
            parent,
            model,
            task,
            spec,
            x,
            y_codes,
            test,
            classes,
            kept,
            ensemble_info,
            y_val,
            deadline,
            started,
            seed,
            oof_override,
            summary={
                "task": shown_task,
                "metric": spec.name,
                f"validation {spec.name}": val_score,
                "best learner": best_learner,
                "validation": validation,
                "trials": len(records),
            },
        )
        held_out = y_codes[test] if len(test) else y_val
        where = "test split" if len(test) else "out-of-fold predictions"
        guardrails = [*guardrails, check_model(task, test_metrics, held_out, where)]
        parent.log_bytes("guardrails.json", _json([g.to_dict() for g in guardrails]))
        leaderboard = [
            {
                "trial": r.number,
                "learner": r.learner,
                "state": r.state,
                "score": r.score,
                "seconds": r.seconds,
                "params": r.params,
                "run_id": r.run_id,
            }
            for r in sorted(records, key=lambda r: (r.score is None, -(_orient(spec, r.score or 0.0))))
        ]
        parent.log_bytes("leaderboard.json", _json(leaderboard))
        seconds = time.monotonic() - started
        parent.log_metric("seconds", seconds)
    tick("done")
    result = AutoMLResult(
        run_id=parent.id,
        task=shown_task,
        metric=spec.name,
        score=val_score,
        test_metrics=test_metrics,
        best_learner=best_learner,
        best_params=best_params,
        trials=records,
        seconds=seconds,
        time_budget=time_budget,
        stopped_because=stopped_because,
        validation=validation,
        model=model,
        guardrails=guardrails,
        column_kinds=kinds,
        ensemble=ensemble_info,
        example=example,
        feature_importance=importance,
        baseline=baseline_info,
        refit=refit_note,
    )
    if register:
        return _register(ws, result, register, alias)
    return result


# -- forecasting ------------------------------------------------------------------------------------------


def _forecast(
    ws: Workspace,
    pool: _WorkerPool,
    frame: pd.DataFrame,
    version: DataVersion | None,
    target: str,
    time_column: str | None,
    series_id: str | None,
    horizon: int | None,
    metric: str | None,
    folds: int,
    common: dict[str, Any],
) -> AutoMLResult:
    from conveyor.train._forecast import prepare_forecast

    columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        raise ValidationFailed("The data set is empty: it has no rows. Ingest data with rows first.")
    if target not in frame.columns:
        raise NotFound(
            f"No column {target!r} to predict.{did_you_mean(target, columns)} Columns are: {', '.join(columns)}.",
            target=target,
        )
    spec = resolve_metric(metric or "rmse", "forecasting")
    data = prepare_forecast(frame, target, time_column, series_id, horizon, max(2, min(folds, 5)))
    kinds: dict[str, Any] = {c: "numeric" for c in data.x.columns if c != "series"}
    if "series" in data.x.columns:
        kinds["series"] = "categorical" if data.x["series"].nunique() <= 32 else "high_cardinality"
    n = len(data.x)
    summary = (
        f"{n:,} training rows (series × origin × step) from {len(frame):,} rows; {data.forecaster.lags} lags, "
        f"season {data.forecaster.season}, frequency {data.forecaster.freq}."
    )
    return _search_and_finish(
        ws,
        pool,
        version=version,
        target=target,
        task="regression",
        spec=spec,
        x=data.x,
        y_codes=data.y,
        classes=[],
        n_classes=0,
        kinds=kinds,
        guardrails=[Guardrail("series", "passed", summary)],
        dev=np.arange(n),
        test=np.arange(0),
        split=data.folds,
        validation=data.validation,
        forecast=data,
        **common,
    )


def _against_baseline(
    forecast: Any,
    model: Any,
    best_learner: str,
    best_params: dict[str, Any],
    val_score: float,
    kept: dict[int, dict[str, Any]],
    ensemble_info: dict[str, Any] | None,
    spec: MetricSpec,
    split: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]],
    y_val: np.ndarray[Any, Any],
) -> tuple[Any, str, dict[str, Any], float, np.ndarray[Any, Any], dict[str, Any]]:
    """The model is reported as better only if it beats the seasonal-naive forecast on the same origins."""
    from sklearn.base import clone

    baseline_oof = np.concatenate([forecast.baseline[v] for _, v in split])
    baseline_score = score(spec, y_val, baseline_oof)
    beaten = bool(kept) and _orient(spec, val_score) > baseline_score
    info = {
        "name": "seasonal_naive",
        "season": forecast.forecaster.season,
        "score": _unorient(spec, baseline_score),
        "model_score": val_score if kept else None,  # None: no trial finished within the budget
        "beaten": bool(beaten),
    }
    forecaster = clone(forecast.forecaster)
    if beaten:
        forecaster.model = model
        return forecaster, best_learner, best_params, val_score, _oof(kept, ensemble_info), info
    return forecaster, "seasonal_naive", {"season": forecast.forecaster.season}, info["score"], baseline_oof, info


def _oof(kept: dict[int, dict[str, Any]], ensemble_info: dict[str, Any] | None) -> np.ndarray[Any, Any]:
    """The chosen model's out-of-fold predictions (the best trial's, or the ensemble's weighted average)."""
    if ensemble_info is None:
        return np.asarray(kept[max(kept, key=lambda n: kept[n]["score"])]["oof"], dtype=float)
    total = sum(m["weight"] for m in ensemble_info["members"])
    blended = sum(np.asarray(kept[m["trial"]]["oof"], dtype=float) * m["weight"] for m in ensemble_info["members"])
    return np.asarray(blended / total)


def _follow_trial(
    pool: _WorkerPool,
    trial: Any,
    record: TrialRecord,
    child: ActiveRun,
    spec: MetricSpec,
    cap: float,
    tick: Callable[[str], None],
    folds: int,
) -> dict[str, Any] | None:
    """Relay a trial's fold scores to Optuna (pruning) until it ends; kill the worker at ``cap``. After the last
    fold nothing is left to save: the trial completes (one holdout's trials were all pruned or kept whole)."""
    while True:
        remaining = cap - time.monotonic()
        if remaining <= 0:
            pool.kill()
            record.state = "stopped"
            return None
        try:
            if not pool.conn.poll(min(remaining, 0.25)):
                tick(f"trial {trial.number}: {record.learner}")
                continue
            message = pool.conn.recv()
        except (EOFError, OSError):
            pool.kill()
            record.state, record.error = "failed", "the trial worker died (out of memory?)"
            pool.start()
            if pool.payload is not None:
                pool.send_data(pool.payload)
            return None
        kind = message[0]
        if kind == "fold":
            _, _, k, value, _ = message
            trial.report(value, k)
            child.log_metric(f"fold_{spec.name}", _unorient(spec, value), step=k)
            record.fold_scores.append(_unorient(spec, value))
            pool.conn.send("stop" if k < folds - 1 and trial.should_prune() else "go")
        elif kind == "pruned":
            record.state = "pruned"
            return None
        elif kind == "error":
            record.state, record.error = "failed", str(message[2])
            return None
        elif kind == "done":
            record.fold_scores = []
            return dict(message[2])


_MAX_SKIPPED = 50  # the search ends after this many configurations in a row predicted not to finish in time


def _predicted_seconds(records: list[TrialRecord], config: dict[str, Any], folds: int) -> float | None:
    """A trial's seconds, predicted from its learner's earlier trials (finished, pruned after some folds, or
    killed at their cap: a lower bound) at their cost per unit of configuration size; None before the learner's
    first trial."""
    rates = []
    for r in records:
        if r.learner != config["learner"] or r.seconds <= 0 or r.state == "failed":
            continue
        done = 1.0 if r.state != "pruned" else len(r.fold_scores) / max(folds, 1)
        if done > 0:
            rates.append(r.seconds / done / cost_size({"learner": r.learner, "params": r.params}))
    return min(rates) * cost_size(config) if rates else None


def _kth_best(kept: dict[int, dict[str, Any]], k: int) -> float:
    if len(kept) < k:
        return -math.inf
    return float(sorted((v["score"] for v in kept.values()), reverse=True)[k - 1])


def _learner_best(kept: dict[int, dict[str, Any]], learner: str) -> float:
    return max((v["score"] for v in kept.values() if v.get("learner") == learner), default=-math.inf)


def _prune(kept: dict[int, dict[str, Any]]) -> None:
    """Keep the best ``_TOP_K`` trials and each learner's best (the ensemble's diverse candidates)."""
    ranked = sorted(kept, key=lambda n: -kept[n]["score"])
    keep = set(ranked[:_TOP_K]) | {
        n for n in ranked if _learner_best(kept, kept[n].get("learner", "")) <= kept[n]["score"]
    }
    for number in ranked:
        if number not in keep:
            del kept[number]


def _candidates(kept: dict[int, dict[str, Any]]) -> list[int]:
    """The ensemble's candidates, best first: the best ``_REFIT_RESERVED`` trials and each learner's best. The
    best few are often near-copies of one configuration (a blend of them averages some variance out); another
    learner's best makes other errors (a tree model and a linear one: a blend averages those out)."""
    ranked = sorted(kept, key=lambda n: -kept[n]["score"])
    bests = {n for n in ranked if _learner_best(kept, kept[n].get("learner", "")) <= kept[n]["score"]}
    return [n for i, n in enumerate(ranked) if i < _REFIT_RESERVED or n in bests]


def _choose(
    kept: dict[int, dict[str, Any]], spec: MetricSpec, y_val: np.ndarray[Any, Any], use_ensemble: bool
) -> tuple[dict[int, float], float | None]:
    """What ships: the trials and their weights (the best trial alone, or the greedy ensemble of the candidates
    when it scores better) and the ensemble's score (None: the best trial alone)."""
    from conveyor.train._ensemble import select_ensemble

    if not kept:
        return {}, None
    top = max(kept, key=lambda n: kept[n]["score"])
    if not use_ensemble or len(kept) < 2:
        return {top: 1.0}, None
    candidates = [(n, np.asarray(kept[n]["oof"], dtype=float)) for n in _candidates(kept)]
    chosen, ens_score = select_ensemble(candidates, y_val, lambda y, p: score(spec, y, p), max_members=_REFIT_RESERVED)
    if len(chosen) > 1 and ens_score > kept[top]["score"] + 1e-9:
        return {n: float(w) for n, w in chosen.items()}, ens_score
    return {top: 1.0}, None


def _orient(spec: MetricSpec, value: float) -> float:
    return value if spec.greater_is_better else -value


_unorient = _orient  # negation is its own inverse


def _status(records: list[TrialRecord], spec: MetricSpec) -> str:
    done = [r for r in records if r.score is not None]
    if not done:
        return f"{len(records)} trials"
    best = max(done, key=lambda r: _orient(spec, r.score or 0.0))
    return f"{len(records)} trials · best {spec.name} {best.score:.4f} ({best.learner})"


# -- the final model -------------------------------------------------------------------------------------


def _final_model(
    kept: dict[int, dict[str, Any]],
    records: list[TrialRecord],
    spec: MetricSpec,
    task: str,
    y_val: np.ndarray[Any, Any],
    classes: list[Any],
    columns: list[str],
    use_ensemble: bool,
    learners: tuple[str, ...],
) -> tuple[Any, str, dict[str, Any], dict[str, Any] | None, float, dict[int, float]]:
    by_number = {r.number: r for r in records}
    top = max(kept, key=lambda n: kept[n]["score"])
    val_score = kept[top]["score"]
    info: dict[str, Any] | None = None
    # At most three members (the candidates): the search reserved the refit of exactly what it chose (a fourth
    # member made the refit overrun and the model ship 5 fold models per member: 5x the file and scoring time).
    weights, ens_score = _choose(kept, spec, y_val, use_ensemble)
    if ens_score is not None:
        info = {
            "members": [
                {"trial": n, "learner": by_number[n].learner, "weight": w / sum(weights.values())}
                for n, w in sorted(weights.items(), key=lambda kv: -kv[1])
            ],
            "score": _unorient(spec, ens_score),
            "best_single_score": _unorient(spec, val_score),
        }
        val_score = ens_score
    members = [(list(kept[n]["models"]), float(w)) for n, w in weights.items()]
    names = [by_number[n].learner for n in weights]
    model = _automl_model(task, members, classes, names, columns)
    if info is None:
        best_learner, best_params = by_number[top].learner, dict(by_number[top].params)
    else:
        counts: dict[str, float] = {}
        for member in info["members"]:
            counts[member["learner"]] = counts.get(member["learner"], 0) + member["weight"]
        best_learner = (
            "ensemble(" + ", ".join(f"{k} {v:.2f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) + ")"
        )
        best_params = {"members": info["members"]}
    _ = learners
    return model, best_learner, best_params, info, _unorient(spec, val_score), {n: float(w) for n, w in weights.items()}


def _automl_model(
    task: str, members: list[tuple[list[Any], float]], classes: list[Any], names: list[str], columns: list[str]
) -> Any:
    from conveyor.train._ensemble import AutoMLModel

    return AutoMLModel(task=task, members=members, classes=classes or None, learners=names, feature_names=columns)


# -- the refit -------------------------------------------------------------------------------------------

_REFIT_MARGIN = 1.3  # the refit's estimate over the measured fold fits (noise of a busy machine)
_REFIT_OVERHEAD = 0.15  # per member: sending the configuration, pickling the fitted model back
_REFIT_RESERVED = 3  # an ensemble's members at most (the candidates of the greedy selection)
_REFIT_SLACK = 0.25  # reserved beyond the estimates: the end of the last trial, choosing the ensemble


def _refit_estimate(outcome: dict[str, Any], scale: float) -> float:
    """Seconds to fit a trial's configuration once on every row: its mean fold fit, scaled by the rows."""
    return float(outcome.get("fit_seconds", 0.0)) * scale * _REFIT_MARGIN + _REFIT_OVERHEAD


def _refit_reserve(kept: dict[int, dict[str, Any]], choice: dict[int, float], scale: float, busy: float = 1.0) -> float:
    """What the search leaves for the refit of what it would ship now and for logging the refitted model (the
    fixed parts scaled by ``busy``, see :func:`_busy_factor`)."""
    chosen = [kept[n] for n in choice if n in kept]
    if not chosen:
        return 0.0
    return sum(_refit_estimate(o, scale) for o in chosen) + busy * (_REFIT_SLACK + _log_estimate(len(chosen)))


def _busy_factor() -> float:
    """How much slower than on a quiet machine the fixed end of a search (logging, evaluation) will run: the
    one-minute load average per usable core when above one (twice as many runnable processes as cores give each
    about half a core), at most 3. Measured on 2 cores at a load of 4.3: the end of an 8 s search took 4 s, not 2."""
    try:
        load = os.getloadavg()[0]
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    except OSError:
        return 1.0
    return max(1.0, min(3.0, load / max(cores, 1)))


def _log_estimate(pipelines: int) -> float:
    """Seconds to convert a model of this many pipelines to ONNX and store it in the run (skops): a few tenths
    of a second each."""
    return 0.15 + 0.2 * pipelines + _COMPILE_SECONDS * pipelines


_COMPILE_SECONDS = 0.25  # converting and checking one learner's ONNX graph (measured: 0.15-0.4 s on 2 cores)


def _compile(model: Any, forecast: Any, frame: pd.DataFrame, end: float) -> str:
    """Convert the shipped model's learners to ONNX (checked against them) while the budget allows; returns how
    the model scores (the run's ``inference`` tag)."""
    from conveyor.train._ensemble import AutoMLModel

    inner = getattr(model, "model", None) if forecast is not None else model
    if not isinstance(inner, AutoMLModel):
        return "native (the seasonal-naive forecast)" if forecast is not None else "native"
    from conveyor.registry._onnx import compile_automl

    pipelines = sum(len(p) for p, _ in inner.members or [])
    return compile_automl(inner, frame, deadline=end - (0.15 + 0.2 * pipelines))


def _preload_model_store() -> None:
    """Import what storing the model needs (skops walks scikit-learn for its trusted types: over a second) on a
    thread while the search runs, so logging the model at the end does not pay for it."""
    import importlib
    import threading

    def load() -> None:
        with contextlib.suppress(ImportError):
            importlib.import_module("skops.io")

    threading.Thread(target=load, daemon=True, name="conveyor-automl-preload").start()


def _refit(
    pool: _WorkerPool, configs: list[dict[str, Any]], estimates: list[float], end: float
) -> tuple[list[Any] | None, str, float]:
    """Fit each chosen configuration on every training row in the (killable) worker, if that fits before
    ``end``; returns the fitted pipelines (None: keep the fold models), what was done, and its seconds."""
    started = time.monotonic()
    needed = sum(estimates)
    if not pool.alive and pool.spare is None:
        needed += pool.startup_seconds  # a fresh worker imports the learners and reads the data first
    elif not pool.alive or not pool.ready:  # the standby worker may still be importing
        since = pool.started_at if pool.alive or pool.spare is None else pool.spare[2]
        needed += max(0.0, pool.startup_seconds - (started - since))
    if started + needed > end:
        return None, f"skipped (would overrun by {started + needed - end:.1f} s)", 0.0
    if not pool.alive:
        pool.restart()  # the standby worker, which already holds the data
    if not pool.wait_ready(end):
        return None, "skipped (no worker was ready before the deadline)", 0.0
    fitted: list[Any] = []
    for index, config in enumerate(configs):
        try:
            pool.conn.send(("refit", index, config))
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    pool.kill()
                    spent = time.monotonic() - started
                    return None, f"skipped (stopped at the deadline after {spent:.1f} s; estimated {needed:.1f} s)", 0.0
                if pool.conn.poll(min(remaining, 0.25)):
                    message = pool.conn.recv()
                    if message[0] in ("refitted", "error") and message[1] == index:
                        break
        except (EOFError, OSError):
            pool.kill()
            return None, "skipped (the worker died during the refit; out of memory?)", 0.0
        if message[0] == "error":
            return None, f"skipped (the refit failed: {str(message[2]).splitlines()[-1][:300]})", 0.0
        fitted.append(message[2])
    return fitted, "done", time.monotonic() - started


def _evaluate_and_log(
    parent: ActiveRun,
    model: Any,
    task: str,
    spec: MetricSpec,
    x: pd.DataFrame,
    y_codes: np.ndarray[Any, Any],
    test: np.ndarray[Any, Any],
    classes: list[Any],
    kept: dict[int, dict[str, Any]],
    ensemble_info: dict[str, Any] | None,
    y_val: np.ndarray[Any, Any],
    deadline: float,
    started: float,
    seed: int,
    oof_override: np.ndarray[Any, Any] | None,
    summary: dict[str, Any],
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    from conveyor.train._evaluate import (
        charts,
        evaluation_html,
        importance_figure,
        metrics_for,
        permutation_importance,
    )

    if len(test):
        x_test, y_test = x.iloc[test].reset_index(drop=True), y_codes[test]
        pred = model.predict_proba(x_test) if task == "classification" else model.predict(x_test)
        source = f"test split ({len(test):,} rows never seen by the search)"
    else:  # small data: the out-of-fold predictions of the chosen model are the held-out evidence
        x_test, y_test = None, y_val
        if oof_override is not None:
            pred = oof_override
        elif ensemble_info is None:
            pred = kept[max(kept, key=lambda n: kept[n]["score"])]["oof"].astype(float)
        else:
            total = sum(m["weight"] for m in ensemble_info["members"])
            pred = sum(kept[m["trial"]]["oof"].astype(float) * m["weight"] for m in ensemble_info["members"]) / total
        repeats = len(y_val) // max(len(x), 1)  # repeated folds predict every row once per repeat
        rows = f"{len(y_val):,} rows" if repeats < 2 else f"{len(x):,} rows x {repeats} repeats of the folds"
        source = f"out-of-fold predictions ({rows}, each never seen by the model that predicted it)"
    metrics = metrics_for(task, y_test, np.asarray(pred, dtype=float))
    parent.log_metrics({f"test_{k}": v for k, v in metrics.items()})
    figures = charts(task, y_test, np.asarray(pred, dtype=float), classes)
    importance: list[dict[str, Any]] = []
    complete = False
    if x_test is not None:

        def scorer(m: Any, frame: pd.DataFrame, target: np.ndarray[Any, Any]) -> float:
            out = m.predict_proba(frame) if task == "classification" else m.predict(frame)
            return score(spec, target, np.asarray(out, dtype=float))

        importance, complete = permutation_importance(
            model, x_test, y_test, scorer, deadline=deadline - max(0.5, 0.03 * (deadline - started)), seed=seed
        )
        if importance:
            figures["feature_importance"] = importance_figure(importance)
    for name, fig in figures.items():
        parent.log_bytes(f"charts/{name}.json", fig.to_json().encode(), "application/json")
    evaluation = {
        "evaluated_on": source,
        "metrics": metrics,
        "feature_importance": importance,
        "feature_importance_complete": complete,
        "ensemble": ensemble_info,
        "classes": [str(c) for c in classes],
    }
    parent.log_bytes("evaluation.json", _json(evaluation))
    page = evaluation_html(
        f"AutoML run {parent.id}",
        {**summary, "evaluated on": source, **{f"test {k}": v for k, v in metrics.items()}},
        figures,
    )
    parent.log_bytes("evaluation.html", page.encode(), "text/html")
    return metrics, importance


def _signature(model: Any, example: pd.DataFrame, task: str) -> dict[str, Any]:
    from conveyor.registry import infer_signature

    predictions = model.predict(example if task == "forecasting" else example.head(50))
    if isinstance(predictions, pd.DataFrame):
        predictions = predictions["forecast"].to_numpy()
    return dict(infer_signature(example, predictions))


def _register(ws: Workspace, result: AutoMLResult, name: str, alias: str | None) -> AutoMLResult:
    """Register the model the run logged (``--register``: the same as 'conveyor models register --run')."""
    from dataclasses import replace

    version = ws.models.register_from_run(result.run_id, name)
    if alias:
        version = ws.models.set_alias(name, alias, version.version)
    return replace(result, model_ref=f"{name}:{version.version}")


def _json(value: Any) -> bytes:
    return orjson.dumps(
        value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str
    )


_ = LEARNERS
