"""``ws.monitors``: ad-hoc drift between two data sets (data versions, files or tables in memory).

Later: monitors of endpoints (reference profiles, windows, schedules, alerts, retraining actions).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import BadInput
from conveyor.monitor._drift import DEFAULT_DRIFT_SHARE, DriftReport, Table, compute_drift
from conveyor.monitor._metrics import DEFAULT_EXACT_LIMIT, DriftMetric

if TYPE_CHECKING:
    from conveyor.data import DataVersion
    from conveyor.workspace import Workspace

__all__ = ["DataSide", "Monitors", "looks_like_path"]

DataSide = Any
"""A side of a comparison: a data reference (``name``, ``name:3``, ``name@latest``), a :class:`DataVersion`, a
CSV or Parquet path, an Arrow table, or a pandas or Polars data frame."""

_FILE_SUFFIXES = {".csv", ".tsv", ".txt", ".parquet", ".pq"}


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
