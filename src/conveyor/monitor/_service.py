"""``ws.monitors``: ad-hoc drift between two data sets (data versions, files or tables in memory), reference
profiles of model versions, and monitors of endpoints (signals over windows of collected requests, schedules,
alerts, retraining actions, feedback).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.errors import BadInput, NotFound
from conveyor.monitor import _monitors
from conveyor.monitor._drift import DEFAULT_DRIFT_SHARE, DriftReport, compute_drift
from conveyor.monitor._metrics import DEFAULT_EXACT_LIMIT, DriftMetric
from conveyor.monitor._monitors import Alert, Monitor, MonitorResult, MonitorScheduler
from conveyor.monitor._profile import Profile, build_profile
from conveyor.monitor._table import Table

if TYPE_CHECKING:
    from conveyor.data import DataVersion
    from conveyor.workspace import Workspace

__all__ = ["DataSide", "Monitors", "looks_like_path"]

DataSide = Any
"""A side of a comparison: a data reference (``name``, ``name:3``, ``name@latest``), a :class:`DataVersion`, a
CSV or Parquet path, an Arrow table, or a pandas or Polars data frame."""

_FILE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq"}
PROFILE_FILE = "reference_profile.npz"
"""The file of a model version holding its reference profile."""
PREDICTION = "prediction"
"""The column of a reference profile holding the model's predictions on its training data."""
MODEL_PREFIX = "model:"
"""A drift side naming a model version's reference profile (``model:churn@champion``)."""


def looks_like_path(text: str) -> bool:
    """Whether a command-line side names a file rather than a data version: it exists, or has a data file's
    suffix, or a path separator (data names cannot hold ``/``)."""
    path = Path(text).expanduser()
    return path.exists() or path.suffix.lower() in _FILE_SUFFIXES or "/" in text or "\\" in text


class Monitors:
    """Drift, reference profiles and monitors of deployed models. Reached as ``ws.monitors``."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def drift(
        self,
        reference: DataSide,
        current: DataSide,
        metric: str | DriftMetric | None = None,
        columns: Iterable[str] | None = None,
        *,
        threshold: float | None = None,
        thresholds: Mapping[str, float] | None = None,
        prediction: str | None = None,
        drift_share: float = DEFAULT_DRIFT_SHARE,
        exact_limit: int = DEFAULT_EXACT_LIMIT,
        chart: bool = False,
    ) -> DriftReport:
        """Drift of ``current`` against ``reference``, column by column (see :func:`compute_drift`).

        Raises:
            NotFound: a data reference names no version.
            BadInput: a file that is missing or not CSV/Parquet, an unknown metric or column, a bad threshold.
        """
        with contextlib.ExitStack() as stack:
            ref: Table | Profile
            if isinstance(reference, Profile):
                ref = reference
            elif isinstance(reference, str) and reference.startswith(MODEL_PREFIX):
                ref = self.reference(reference.removeprefix(MODEL_PREFIX))
            else:
                ref = stack.enter_context(self._side(reference, "reference"))
            cur = stack.enter_context(self._side(current, "current"))
            return compute_drift(
                ref,
                cur,
                metric=metric,
                columns=columns,
                threshold=threshold,
                thresholds=thresholds,
                prediction=prediction,
                drift_share=drift_share,
                exact_limit=exact_limit,
                chart=chart,
            )

    def profile(
        self, data: DataSide, columns: Iterable[str] | None = None, *, exact_limit: int = DEFAULT_EXACT_LIMIT
    ) -> Profile:
        """The drift profile of a data set (every column, or ``columns``), computed out of core.

        Raises:
            NotFound: a data reference names no version.
            BadInput: a file that is missing or not CSV/Parquet, an unknown column.
        """
        with self._side(data, "data") as table:
            return build_profile(table, columns=None if columns is None else list(columns), exact_limit=exact_limit)

    def reference(
        self, model: str, data: DataSide | None = None, *, refresh: bool = False, compute: bool = True
    ) -> Profile:
        """The reference profile of a model version: its input columns and its predictions on its training data.

        Computed once and stored with the version (file ``reference_profile.npz``); later calls read it. ``data``
        (or ``refresh``) computes it again, from ``data`` or from the data version the training run read.
        ``compute=False`` only reads a stored one.

        Raises:
            NotFound: no such model version, or (``compute=False``) it has no stored profile.
            BadInput: the training run read no data version and no ``data`` is given; the data lacks the model's
                input columns.
        """
        registry = self._ws.models
        version = registry.get(model)
        if PROFILE_FILE in version.files and data is None and not refresh:
            return Profile.from_bytes(registry.file_bytes(version, PROFILE_FILE), f"the profile of {version.ref}")
        if not compute:
            raise NotFound(
                f"Model {version.ref} has no reference profile yet. Compute it once: conveyor monitor profile "
                f"{version.ref} (or POST /api/v1/models/{version.ref}/profile).",
                model=version.ref,
            )
        if data is None:
            inputs = self._ws.runs.get(version.run_id).inputs if version.run_id else []
            if not inputs:
                raise BadInput(
                    f"Model {version.ref} has no training data version on record (its run read none). Give the "
                    f"reference data: conveyor monitor profile {version.ref} --data DATA.",
                    model=version.ref,
                )
            data = inputs[0]
        columns = [str(c["name"]) for c in version.signature.get("inputs", [])]
        with self._side(data, "reference") as table:
            absent = [c for c in columns if c not in table.columns]
            if absent:
                raise BadInput(
                    f"The reference data {table.label} lacks columns model {version.ref} takes: {', '.join(absent)}.",
                    model=version.ref,
                )
            profile = build_profile(table, columns=columns or None, source=table.label)
            predicted, why = _predictions(registry.load(version), table, columns or table.columns)
        if predicted is None:
            profile = dataclasses.replace(profile, skipped={**profile.skipped, PREDICTION: why})
        else:
            extra = build_profile(predicted, source=profile.source)
            profile = dataclasses.replace(
                profile,
                sketches={**profile.sketches, **extra.sketches},
                skipped={**profile.skipped, **extra.skipped},
                seconds=round(profile.seconds + extra.seconds, 4),
            )
        blob = self._ws.artifacts.put_bytes(profile.to_bytes())
        registry._add_file(version, PROFILE_FILE, {"digest": blob.digest, "size": blob.size, "source": profile.source})
        return profile

    # -- monitors of endpoints -------------------------------------------------------------------------

    def create(
        self,
        name: str,
        endpoint: str,
        *,
        signals: Iterable[str] = ("drift", "quality", "prediction"),
        window: str | int = "1h",
        reference: str | None = None,
        schedule: str | None = None,
        timezone: str = "UTC",
        alerts: Iterable[str] = ("log",),
        action: str | Mapping[str, Any] | None = None,
        thresholds: Mapping[str, Any] | None = None,
        retrain: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> Monitor:
        """Watch an endpoint's collected requests.

        Args:
            name: the monitor's name.
            endpoint: an endpoint that collects requests (``--collect``).
            signals: any of ``drift``, ``quality``, ``prediction``, ``performance``.
            window: how far back each run looks (``15m``, ``1h``, ``1d``, or seconds).
            reference: a data version to compare with; default the reference profile of the model the endpoint
                serves (computed once from its training data and stored with the version).
            schedule: a cron expression (in ``timezone``) the scheduler of ``conveyor server`` runs it at.
            alerts: channels, each ``log``, ``webhook:URL`` or ``email:ADDRESS``.
            action: ``retrain:PIPELINE``, run on every alert (not while an earlier alert's retraining is still
                open); its challenger goes through gates and a canary (:mod:`conveyor.monitor._loop`).
            retrain: the loop's options: ``margin``, ``require_approval``, ``canary`` (%), ``canary_seconds``,
                ``canary_min_requests``, ``max_error_increase``, ``max_latency_ratio``, ``retrain_timeout``.
            thresholds: overrides of :data:`DEFAULT_THRESHOLDS`, plus ``metric`` (one drift metric for every
                column) and ``min``/``max`` bounds of performance metrics.
            replace: redefine an existing monitor of that name (its history stays).

        Raises:
            NotFound: no such endpoint, reference data or pipeline.
            BadInput: the endpoint does not collect; a bad signal, window, schedule, channel or threshold;
                email alerts without an SMTP server.
            Conflict: a monitor of that name exists (without ``replace``).
        """
        return _monitors.create(
            self._ws,
            name,
            endpoint,
            signals=signals,
            window=window,
            reference=reference,
            schedule=schedule,
            timezone=timezone,
            alerts=alerts,
            action=action,
            thresholds=thresholds,
            retrain=retrain,
            replace=replace,
        )

    def advance(self) -> builtins.list[dict[str, Any]]:
        """Move every open promotion (retraining → gates → canary → promotion or rollback) on as far as it can
        go now; the scheduler does this at every check. Returns the promotions that changed."""
        from conveyor.monitor._loop import advance

        return advance(self._ws)

    def approve(self, alert_id: str) -> dict[str, Any]:
        """Let a promotion waiting for approval (``require_approval``) go on to its canary."""
        from conveyor.monitor._loop import approve

        return approve(self._ws, alert_id)

    def get(self, name: str) -> Monitor:
        """Raises: NotFound."""
        return _monitors.get(self._ws, name)

    def list(self, endpoint: str | None = None) -> builtins.list[Monitor]:
        return _monitors.list_all(self._ws, endpoint)

    def delete(self, name: str) -> Monitor:
        """Delete a monitor with its results and alerts. Raises: NotFound."""
        return _monitors.delete(self._ws, name)

    def run(self, name: str, *, now: datetime | None = None) -> MonitorResult:
        """Run a monitor now over its last window; the result is stored (and alerts sent, actions started)."""
        return _monitors.run(self._ws, name, now=now)

    def history(self, name: str, limit: int = 100) -> builtins.list[MonitorResult]:
        """A monitor's results, newest first."""
        return _monitors.history(self._ws, name, limit)

    def alerts(self, name: str, limit: int = 100) -> builtins.list[Alert]:
        """A monitor's alerts with their deliveries, newest first."""
        return _monitors.alerts(self._ws, name, limit)

    def feedback(
        self,
        name: str,
        data: DataSide,
        *,
        label: str | None = None,
        id_column: str = "request_id",
        row_column: str = "row",
    ) -> dict[str, Any]:
        """Store ground truth for the monitored endpoint's requests: rows of request id (the endpoint's
        ``x-request-id`` answer, or the id the caller sent), optional row index in the request (default 0) and
        label. Appended to ``<endpoint>_feedback``; the performance signal joins them to collected requests.

        Returns ``{"asset", "rows", "matched", "unmatched"}`` (labels whose request was / was not collected).

        Raises:
            BadInput: no id or label column, empty labels, a row index that is not a whole number, labels of
                another type than those sent before.
        """
        return _monitors.feedback(self._ws, name, data, label=label, id_column=id_column, row_column=row_column)

    def scheduler(self) -> MonitorScheduler:
        """The runner of due scheduled monitors (``conveyor server`` and ``conveyor scheduler`` start one)."""
        return MonitorScheduler(self._ws)

    @contextlib.contextmanager
    def _side(self, side: DataSide, role: str) -> Iterator[Table]:
        from conveyor.data import DataVersion

        if isinstance(side, DataVersion):
            with self._version(side) as table:
                yield table
            return
        if isinstance(side, Path) or (isinstance(side, str) and looks_like_path(side)):
            yield _file_table(Path(side), role)
            return
        if isinstance(side, str):
            with self._version(self._ws.data.get(side)) as table:
                yield table
            return
        table, notes = _arrow(side, role)
        yield Table(f"{role} ({type(side).__name__})", table=table, notes=notes)

    @contextlib.contextmanager
    def _version(self, version: DataVersion) -> Iterator[Table]:
        with contextlib.ExitStack() as stack:
            paths = [stack.enter_context(self._ws.artifacts.local_file(f["digest"])) for f in version.files]
            yield Table(version.ref, parquet=paths)


def _predictions(model: Any, table: Table, columns: list[str]) -> tuple[Table | None, str]:
    """The model's predictions on every row of ``table`` (column ``prediction``), scored a batch at a time; or
    None and why (a model that does not score these rows one by one: a forecaster)."""
    import pyarrow as pa

    arrays = []
    for batch in table.row_batches(columns, 100_000):
        try:
            predicted = np.asarray(model.predict(batch.to_pandas()))
            arrays.append(pa.array(predicted.tolist() if predicted.dtype == object else predicted.reshape(-1)))
        except Exception as exc:  # noqa: BLE001 - the profile of the inputs stands without the predictions
            return None, f"the model did not score the reference rows: {type(exc).__name__}: {str(exc)[:300]}"
    if not arrays:
        return None, "the reference has no rows to score"
    return Table("predictions", table=pa.table({PREDICTION: pa.chunked_array(arrays)})), ""


def _file_table(path: Path, role: str) -> Table:
    path = path.expanduser()
    if not path.exists():
        raise BadInput(
            f"The {role} file {str(path)!r} does not exist. Give a CSV or Parquet file, or a data version such as "
            "'churn:3' or 'churn@latest'."
        )
    suffix = path.suffix.lower()
    if path.is_dir():
        parts = sorted(path.glob("*.parquet"))
        if not parts:
            raise BadInput(f"The {role} folder {str(path)!r} holds no .parquet files.")
        return Table(str(path), parquet=parts)
    if suffix in (".parquet", ".pq"):
        return Table(str(path), parquet=[path])
    if suffix in (".csv", ".tsv", ".txt"):
        import pyarrow as pa
        import pyarrow.csv as pa_csv

        options = pa_csv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
        try:
            table = pa_csv.read_csv(path, parse_options=options)
        except pa.ArrowInvalid as exc:
            raise BadInput(f"Cannot read the {role} file {str(path)!r} as CSV: {exc}") from exc
        return Table(str(path), table=table)
    raise BadInput(f"The {role} file {str(path)!r} is neither CSV nor Parquet; give a .csv, .tsv or .parquet file.")


def _arrow(data: Any, role: str) -> tuple[Any, dict[str, str]]:
    """An Arrow table from an Arrow table, a Polars or pandas data frame; pandas columns of mixed Python types are
    compared as text."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data, {}
    to_arrow = getattr(data, "to_arrow", None)
    if callable(to_arrow):  # Polars
        return to_arrow(), {}
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        frame = data.copy(deep=False)
        notes: dict[str, str] = {}
        for name in frame.columns:
            if frame[name].dtype == object:
                kinds = sorted({type(v).__name__ for v in frame[name].dropna()})
                if len(kinds) > 1:
                    frame[name] = frame[name].map(lambda v: None if pd.isna(v) else str(v))
                    notes[str(name)] = f"mixed types ({', '.join(kinds)}) compared as text"
        return pa.Table.from_pandas(frame, preserve_index=False), notes
    raise BadInput(
        f"The {role} side is a {type(data).__name__}; give a data version, a CSV or Parquet path, an Arrow table "
        "or a pandas or Polars data frame."
    )
