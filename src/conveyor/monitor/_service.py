"""``ws.monitors``: ad-hoc drift between two data sets (data versions, files or tables in memory).

Later: monitors of endpoints (reference profiles, windows, schedules, alerts, retraining actions).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.errors import BadInput, NotFound
from conveyor.monitor._drift import DEFAULT_DRIFT_SHARE, DriftReport, compute_drift
from conveyor.monitor._metrics import DEFAULT_EXACT_LIMIT, DriftMetric
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
    """Drift and (later) monitors of deployed models. Reached as ``ws.monitors``."""

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
    raise BadInput(
        f"The {role} file {str(path)!r} is neither CSV nor Parquet; drift reads .csv, .tsv and .parquet files."
    )


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
