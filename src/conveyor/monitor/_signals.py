"""The signals a monitor computes over one window of an endpoint's collected requests.

- **drift**: each input column of the window against the reference (a data version, or the reference profile of
  the model the endpoint serves), with the per-type default metrics of :func:`compute_drift` (but KS for numbers
  in windows of at most 1,000 rows: normalised Wasserstein's sampling noise alone passes its 0.1 threshold on a
  few hundred rows); the signal alerts when the share of drifted columns reaches ``drift_share``.
- **quality**: per input column, against the reference: null share (alerts when it rises by more than
  ``null_increase`` over the reference's), values unreadable as the reference's type (``type_errors``, as a share of
  rows), numbers outside the reference's range (``out_of_range``) and categories it never had (``unseen``); a
  column the model takes but the window lacks always alerts.
- **prediction**: drift of the ``prediction`` column against the predictions in the model's reference profile.
- **performance**: predictions joined with the labels sent as feedback (by request id and row); accuracy,
  precision, recall, F1 and (binary, with probabilities) ROC AUC for classifiers, MAE, RMSE and R² for regressors.
  Alerts below ``min`` / above ``max`` bounds, or, without bounds, when a metric is worse than the model's own test
  figure (``test_<metric>`` on its training run) by more than ``performance_drop`` (absolute, for scores in 0–1)
  or ``error_increase`` (relative, for MAE and RMSE).

Drift and prediction need ``min_rows`` rows in the window, performance ``min_labels`` labelled rows; below that
the signal is skipped and says why.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.errors import BadInput, NotFound

if TYPE_CHECKING:
    import pyarrow as pa

    from conveyor.monitor._drift import DriftReport
    from conveyor.workspace import Workspace

__all__ = [
    "DEFAULT_THRESHOLDS",
    "PERFORMANCE_METRICS",
    "SIGNALS",
    "SignalResult",
    "check_thresholds",
    "collected_asset",
    "feedback_asset",
    "read_window",
]

SIGNALS = ("drift", "quality", "prediction", "performance")
"""What a monitor can watch."""

DEFAULT_THRESHOLDS: dict[str, Any] = {
    "drift_share": 0.5,
    "null_increase": 0.1,
    "type_errors": 0.01,
    "out_of_range": 0.1,
    "unseen": 0.1,
    "performance_drop": 0.05,
    "error_increase": 0.25,
    "min_rows": 30,
    "min_labels": 20,
}
"""Each threshold's default (``conveyor monitor create --threshold KEY=VALUE`` changes one)."""

PERFORMANCE_METRICS = {
    # name: (task, higher is better)
    "accuracy": ("classification", True),
    "precision": ("classification", True),
    "recall": ("classification", True),
    "f1": ("classification", True),
    "roc_auc": ("classification", True),
    "mae": ("regression", False),
    "rmse": ("regression", False),
    "r2": ("regression", True),
}
"""The performance metrics, their task and direction (``--min accuracy=0.8``, ``--max rmse=3``)."""

_SHARES = ("drift_share", "null_increase", "type_errors", "out_of_range", "unseen", "performance_drop")


def check_thresholds(values: dict[str, Any]) -> dict[str, Any]:
    """Thresholds checked: known keys, numbers in range; ``min``/``max`` map performance metrics to bounds.

    Raises:
        BadInput: an unknown key or metric, a value out of range.
    """
    from conveyor.errors import did_you_mean

    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("min", "max"):
            if not isinstance(value, dict):
                raise BadInput(f"Threshold {key!r} maps metrics to bounds, e.g. {{'accuracy': 0.8}}.")
            bounds = {}
            for metric, bound in value.items():
                if metric not in PERFORMANCE_METRICS:
                    raise BadInput(
                        f"Unknown performance metric {metric!r}.{did_you_mean(str(metric), PERFORMANCE_METRICS)} "
                        f"Use one of: {', '.join(PERFORMANCE_METRICS)}."
                    )
                bounds[str(metric)] = _number(f"{key} {metric}", bound, 0.0, 1e12)
            checked[key] = bounds
            continue
        if key == "metric":
            from conveyor.monitor._metrics import get_metric

            get_metric(str(value))
            checked[key] = str(value)
            continue
        if key not in DEFAULT_THRESHOLDS:
            known = [*DEFAULT_THRESHOLDS, "metric", "min", "max"]
            raise BadInput(
                f"Unknown threshold {key!r}.{did_you_mean(str(key), known)} Use one of: {', '.join(known)}.",
                threshold=key,
            )
        if key in ("min_rows", "min_labels"):
            number = _number(key, value, 1, 10_000_000)
            if number != int(number):
                raise BadInput(f"Threshold {key} is a number of rows; got {value!r}.")
            checked[key] = int(number)
        elif key in _SHARES:
            checked[key] = _number(key, value, 1e-9 if key == "drift_share" else 0.0, 1.0)
        else:
            checked[key] = _number(key, value, 0.0, 1e6)
    return checked


def _number(key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(str(value))
        except ValueError:
            raise BadInput(f"Threshold {key} must be a number; got {value!r}.") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise BadInput(f"Threshold {key} must be from {low:g} to {high:g}; got {value!r}.")
    return float(value)


def collected_asset(endpoint: str) -> str:
    """The data asset an endpoint's sampled requests are appended to."""
    return f"{endpoint}_requests"


def feedback_asset(endpoint: str) -> str:
    """The data asset the labels sent as feedback for an endpoint's requests are appended to."""
    return f"{endpoint}_feedback"


@contextlib.contextmanager
def _parts(ws: Workspace, asset: str, since: datetime | None = None) -> Iterator[list[str] | None]:
    """Local paths of the latest version's Parquet parts, or None when the asset does not exist yet.

    With ``since``, only the parts of versions committed at or after it: an endpoint commits collected rows
    after their time, so a version committed earlier holds no row of a window starting at ``since`` (a monitor of
    a long-lived endpoint reads its window, not its whole history).
    """
    if since is None:
        try:
            digests = [f["digest"] for f in ws.data.get(asset).files]
        except NotFound:
            yield None
            return
    else:
        found = _recent_digests(ws, asset, since)
        if found is None:
            yield None
            return
        digests = found
    with contextlib.ExitStack() as stack:
        yield [str(stack.enter_context(ws.artifacts.local_file(d))) for d in digests]


def _recent_digests(ws: Workspace, asset: str, since: datetime) -> list[str] | None:
    """The digests of the parts the latest version of ``asset`` holds that were committed at or after ``since``
    (one recursive query down its append chain, stopping at the first older version)."""
    import sqlalchemy as sa

    from conveyor.store._schema import DataAssetRow, DataVersionRow

    with ws.store.read() as session:
        latest = session.execute(
            sa.select(DataVersionRow.id)
            .join(DataAssetRow, DataAssetRow.id == DataVersionRow.asset_id)
            .where(DataAssetRow.name == asset)
            .order_by(DataVersionRow.version.desc())
            .limit(1)
        ).scalar_one_or_none()
        if latest is None:
            return None
        row = DataVersionRow
        chain = (
            sa.select(row.id, row.extends_id, row.files, row.created_at, sa.literal(0).label("depth"))
            .where(row.id == latest)
            .cte("chain", recursive=True)
        )
        parent = sa.orm.aliased(DataVersionRow)
        chain = chain.union_all(
            sa.select(parent.id, parent.extends_id, parent.files, parent.created_at, chain.c.depth + 1).where(
                parent.id == chain.c.extends_id, chain.c.created_at >= since
            )
        )
        found = session.execute(sa.select(chain.c.files, chain.c.created_at).order_by(chain.c.depth.desc())).all()
    return [f["digest"] for files, created in found if created >= since for f in files]


def _duckdb() -> Any:
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET threads TO 2")
    return con


def read_window(ws: Workspace, endpoint: str, start: datetime, end: datetime) -> pa.Table | None:
    """The rows an endpoint collected with ``start <= ts < end``; None when it never collected any."""
    with _parts(ws, collected_asset(endpoint), since=start) as paths:
        if paths is None:
            return None
        if not paths:
            import pyarrow as pa

            return pa.table({"ts": pa.array([], pa.float64())})
        con = _duckdb()
        try:
            table: pa.Table = con.sql(
                "SELECT * FROM read_parquet($paths, union_by_name = true) WHERE ts >= $start AND ts < $end ORDER BY ts",
                params={"paths": paths, "start": start.timestamp(), "end": end.timestamp()},
            ).to_arrow_table()
        finally:
            con.close()
    return table


LATEST_LABELS = (
    "SELECT request_id, row, arg_max(label, ts) AS label FROM read_parquet($feedback, union_by_name = true) "
    "GROUP BY request_id, row"
)
"""The latest label sent for each (request id, row) of a feedback asset's parts (DuckDB, parameter ``$feedback``)."""


def join_feedback(ws: Workspace, endpoint: str, window: pa.Table) -> pa.Table | None:
    """The window's rows that have a label: columns ``prediction``, ``label`` and (if collected) ``score``. The
    latest label sent for a (request id, row) counts. None when no feedback was ever sent."""
    with _parts(ws, feedback_asset(endpoint)) as paths:
        if paths is None:
            return None
        con = _duckdb()
        try:
            con.register("window_rows", window)
            row = "w.row" if "row" in window.column_names else "0"
            score = ", w.score AS score" if "score" in window.column_names else ""
            table: pa.Table = con.sql(
                f"""
                WITH labels AS ({LATEST_LABELS})
                SELECT w.prediction AS prediction, l.label AS label{score}
                FROM window_rows w JOIN labels l ON w.request_id = l.request_id AND {row} = l.row
                """,
                params={"feedback": paths},
            ).to_arrow_table()
        finally:
            con.close()
    return table


@dataclass
class SignalResult:
    """One signal's outcome over a window: its summary, whether it alerts, and why (``problems``), or why it
    was skipped."""

    name: str
    alert: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"alert": self.alert, **self.summary}
        if self.problems:
            found["problems"] = self.problems
        if self.skipped:
            found["skipped"] = self.skipped
        return found


def drift_signal(report: DriftReport, rows: int, thresholds: dict[str, Any]) -> SignalResult:
    """The drift signal from a drift report of the input columns."""
    result = SignalResult("drift")
    min_rows = int(thresholds["min_rows"])
    if rows < min_rows:
        result.skipped = (
            f"{rows} row(s) in the window; drift needs at least {min_rows} (threshold min_rows) to mean anything"
        )
        return result
    drifted = [c.column for c in report.columns if c.drifted]
    result.summary = {
        "share_drifted": report.share_drifted,
        "drift_share": report.drift_share,
        "drifted_columns": drifted,
        "columns": {
            c.column: {"metric": c.metric, "value": c.value, "threshold": c.threshold, "drifted": c.drifted}
            for c in report.columns
        },
    }
    if report.drifted:
        result.alert = True
        shown = ", ".join(drifted[:8]) + (", …" if len(drifted) > 8 else "")
        result.problems.append(
            f"drift in {len(drifted)} of {len(report.columns)} columns (share {report.share_drifted:.2f} ≥ "
            f"{report.drift_share:.2f}): {shown}"
        )
    return result


def quality_signal(report: DriftReport, rows: int, thresholds: dict[str, Any]) -> SignalResult:
    """The data-quality signal from the quality details of a drift report."""
    result = SignalResult("quality")
    columns: dict[str, Any] = {}
    for column in report.columns:
        found = column.detail.get("quality")
        if not found:
            continue
        columns[column.column] = found
        rise = found["null_share"] - found["reference_null_share"]
        if rise > thresholds["null_increase"]:
            result.problems.append(
                f"{column.column}: null share {found['null_share']:.2f} (reference {found['reference_null_share']:.2f})"
            )
        if rows and found["type_errors"] / rows > thresholds["type_errors"]:
            result.problems.append(f"{column.column}: {found['type_errors']} value(s) not of the reference's type")
        if found.get("out_of_range_share", 0.0) > thresholds["out_of_range"]:
            result.problems.append(
                f"{column.column}: {found['out_of_range_share']:.0%} of values outside the reference's range"
            )
        if found.get("unseen_share", 0.0) > thresholds["unseen"]:
            examples = ", ".join(map(str, found.get("unseen_examples", [])[:3]))
            result.problems.append(
                f"{column.column}: {found['unseen_share']:.0%} of values are categories the reference never had "
                f"({examples})"
            )
    missing = report.missing.get("in_current", [])
    for name in missing:
        result.problems.append(f"{name}: the model takes this column but the window's requests lack it")
    result.summary = {"columns": columns, "missing": missing}
    result.alert = bool(result.problems)
    return result


def prediction_signal(report: DriftReport | None, rows: int, thresholds: dict[str, Any], why: str) -> SignalResult:
    """The prediction-drift signal from a drift report of the prediction column (None: ``why`` it was skipped)."""
    result = SignalResult("prediction")
    if report is None:
        result.skipped = why
        return result
    if rows < int(thresholds["min_rows"]):
        result.skipped = f"{rows} row(s) in the window; prediction drift needs at least {int(thresholds['min_rows'])}"
        return result
    column = report.columns[0]
    result.summary = {"metric": column.metric, "value": column.value, "threshold": column.threshold}
    if column.drifted is None:
        result.skipped = column.message or "the predictions could not be compared"
    elif column.drifted:
        result.alert = True
        result.problems.append(f"prediction drift: {column.metric} {column.value:.3g} beyond {column.threshold:g}")
    return result


def performance_signal(joined: pa.Table | None, thresholds: dict[str, Any], baseline: dict[str, float]) -> SignalResult:
    """The performance signal from the window's labelled rows (see :func:`join_feedback`)."""
    result = SignalResult("performance")
    labelled = 0 if joined is None else joined.num_rows
    min_labels = int(thresholds["min_labels"])
    if joined is None:
        result.skipped = "no labels were sent yet: conveyor monitor feedback NAME FILE (request_id, row, label)"
        return result
    if labelled < min_labels:
        result.skipped = f"{labelled} labelled row(s) in the window; performance needs at least {min_labels}"
        result.summary = {"labelled": labelled}
        return result
    metrics = performance_metrics(joined)
    result.summary = {"labelled": labelled, "metrics": metrics, "baseline": baseline}
    bounds_min: dict[str, float] = thresholds.get("min", {})
    bounds_max: dict[str, float] = thresholds.get("max", {})
    for name, value in metrics.items():
        if value is None:
            continue
        higher = PERFORMANCE_METRICS[name][1]
        if name in bounds_min and value < bounds_min[name]:
            result.problems.append(f"{name} {value:.4g} < {bounds_min[name]:g} (min)")
        elif name in bounds_max and value > bounds_max[name]:
            result.problems.append(f"{name} {value:.4g} > {bounds_max[name]:g} (max)")
        elif name not in bounds_min and name not in bounds_max and name in baseline:
            reference = baseline[name]
            if higher and value < reference - thresholds["performance_drop"]:
                result.problems.append(
                    f"{name} {value:.4g}, down from {reference:.4g} at training (more than "
                    f"{thresholds['performance_drop']:g})"
                )
            elif not higher and value > reference * (1 + thresholds["error_increase"]):
                result.problems.append(
                    f"{name} {value:.4g}, up from {reference:.4g} at training (more than "
                    f"{thresholds['error_increase']:.0%})"
                )
    result.alert = bool(result.problems)
    return result


def performance_metrics(joined: pa.Table) -> dict[str, float | None]:
    """Classification or regression metrics of labelled predictions (regression when both sides are numbers and
    either holds a non-integer value)."""
    from sklearn import metrics as skm

    predicted = np.asarray(joined.column("prediction").to_pylist(), dtype=object)
    labels = np.asarray(joined.column("label").to_pylist(), dtype=object)
    keep = np.array([p is not None and y is not None for p, y in zip(predicted, labels, strict=True)], dtype=bool)
    predicted, labels = predicted[keep], labels[keep]
    if _is_regression(predicted, labels):
        y_pred, y_true = predicted.astype(float), labels.astype(float)
        return {
            "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
            "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else None,
        }
    y_pred, y_true = _same_kind(predicted), _same_kind(labels)
    classes = sorted(set(y_true.tolist()) | set(y_pred.tolist()), key=lambda v: (str(type(v)), v))
    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    pos = classes[-1] if binary else 1
    found: dict[str, float | None] = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision": float(skm.precision_score(y_true, y_pred, average=average, pos_label=pos, zero_division=0)),
        "recall": float(skm.recall_score(y_true, y_pred, average=average, pos_label=pos, zero_division=0)),
        "f1": float(skm.f1_score(y_true, y_pred, average=average, pos_label=pos, zero_division=0)),
        "roc_auc": None,
    }
    if binary and "score" in joined.column_names:
        scores = np.asarray(joined.column("score").to_pylist(), dtype=object)[keep]
        has = np.array([s is not None for s in scores], dtype=bool)
        truth = y_true[has]
        if has.any() and len(set(truth.tolist())) == 2:
            found["roc_auc"] = float(skm.roc_auc_score(truth == pos, scores[has].astype(float)))
    return found


def _is_regression(predicted: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> bool:
    def numbers(values: np.ndarray[Any, Any]) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    if not (numbers(predicted) and numbers(labels)):
        return False
    return any(isinstance(v, float) and not float(v).is_integer() for v in (*predicted, *labels))


def _same_kind(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Labels as one kind: whole floats as ints (a label file read as 1.0 against predictions 1), else as is;
    mixed kinds as text."""
    plain = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    kinds = {type(v) for v in plain}
    if len(kinds) > 1 and not kinds <= {int, bool}:
        plain = [str(v) for v in plain]
    return np.asarray(plain)  # a typed array: scikit-learn refuses object arrays of labels
