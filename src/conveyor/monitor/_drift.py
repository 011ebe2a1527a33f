"""Drift between two tables, column by column: each column is read from both sides (Parquet column chunks, never
the whole table), sketched on the reference side, scored on the current side, and dropped before the next.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import BadInput, did_you_mean
from conveyor.monitor._columns import (
    CATEGORICAL,
    FEW_DISTINCT,
    NUMERIC,
    Column,
    Kind,
    as_categorical,
    distinct_at_most,
    kind_of_type,
    prepare_column,
)
from conveyor.monitor._metrics import (
    DEFAULT_EXACT_LIMIT,
    OTHER,
    DriftMetric,
    PredictionDrift,
    default_metric,
    get_metric,
)
from conveyor.monitor._profile import Profile
from conveyor.monitor._table import Table

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ColumnDrift", "DriftReport", "Table", "compute_drift"]

DEFAULT_DRIFT_SHARE = 0.5
"""The data set drifted when at least this share of its compared columns drifted (Evidently's default)."""


@dataclass(frozen=True)
class ColumnDrift:
    """The verdict on one column. ``value`` and ``drifted`` are None when the column could not be compared
    (``message`` says why); ``chart`` holds both sides' distributions for the HTML report."""

    column: str
    type: str
    metric: str | None
    value: float | None
    threshold: float | None
    drifted: bool | None
    detail: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    chart: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "column": self.column,
            "type": self.type,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "drifted": self.drifted,
        }
        if self.detail:
            found["detail"] = self.detail
        if self.message:
            found["message"] = self.message
        return found


@dataclass(frozen=True)
class DriftReport:
    """Drift between a reference and a current table: per column, the share of drifted columns, and whether the
    data set drifted (share at or above ``drift_share``)."""

    reference: str
    current: str
    columns: list[ColumnDrift]
    rows: dict[str, int]
    share_drifted: float
    drifted: bool
    drift_share: float
    seconds: float
    missing: dict[str, list[str]] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def column(self, name: str) -> ColumnDrift:
        for found in self.columns:
            if found.column == name:
                return found
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "current": self.current,
            "columns": [c.to_dict() for c in self.columns],
            "share_drifted": self.share_drifted,
            "drifted": self.drifted,
            "drift_share": self.drift_share,
            "rows": self.rows,
            "seconds": self.seconds,
            "missing": self.missing,
            "messages": self.messages,
        }

    def to_html(self) -> str:
        """A self-contained HTML report: a summary table and a chart per column (Plotly embedded, no CDN)."""
        from conveyor.monitor._report import render_drift_html

        return render_drift_html(self)


def _reference_kind(table: Table, name: str) -> Kind | None:
    return kind_of_type(table.schema.field(name).type)


def _chart(kind: Kind, current: Column, sketch: Any) -> dict[str, Any]:
    """Both sides' distributions on common bins (30 equal-width bins for numbers, top 20 categories)."""
    import numpy as np

    if kind == NUMERIC:
        assert current.values is not None
        low = min(sketch.minimum, float(current.values[0]))
        high = max(sketch.maximum, float(current.values[-1]))
        if high <= low:
            high = low + 1.0
        edges = np.linspace(low, high, 31)
        ref_cdf = np.interp(edges, sketch.edges, sketch.cdf, left=0.0, right=1.0)
        cur_cdf = np.searchsorted(current.values, edges, side="right") / current.values.size
        ref_cdf[0] = cur_cdf[0] = 0.0
        ref_cdf[-1] = cur_cdf[-1] = 1.0
        return {
            "kind": NUMERIC,
            "edges": edges.tolist(),
            "reference": np.diff(ref_cdf).tolist(),
            "current": np.diff(cur_cdf).tolist(),
        }
    assert current.counts is not None
    total_ref = sum(sketch.counts.values()) or 1
    total_cur = sum(current.counts.values()) or 1
    keys = sorted(set(sketch.counts) | set(current.counts), key=lambda k: -(sketch.counts.get(k, 0)))[:20]
    return {
        "kind": CATEGORICAL,
        "labels": ["(other)" if k.startswith("\x00") else k for k in keys],
        "reference": [sketch.counts.get(k, 0) / total_ref for k in keys],
        "current": [current.counts.get(k, 0) / total_cur for k in keys],
    }


UNSEEN_SHOWN = 10
"""Unseen categories named in a column's quality detail (the most frequent first)."""


def quality(sketch: Any, current: Column) -> dict[str, Any]:
    """Data quality of a current column against the reference sketch: null share, values unreadable as the
    reference's type, numbers outside the reference's range, categories the reference never had."""
    import numpy as np

    rows = current.rows or 1
    found: dict[str, Any] = {
        "null_share": current.nulls / rows,
        "reference_null_share": sketch.nulls / max(sketch.count + sketch.nulls, 1),
        "type_errors": current.dropped,
    }
    if current.kind == NUMERIC and current.values is not None:
        below = int(np.searchsorted(current.values, sketch.minimum, side="left"))
        above = int(current.values.size - np.searchsorted(current.values, sketch.maximum, side="right"))
        found.update(below_range=below, above_range=above, out_of_range_share=(below + above) / rows)
    elif current.counts is not None:
        known = sketch.counts
        unseen = sorted(((k, c) for k, c in current.counts.items() if k not in known), key=lambda kc: (-kc[1], kc[0]))
        # A reference with more than TOP_K categories counted its rarest together: "unseen" then means "not among
        # the reference's most frequent", and says so.
        found.update(
            unseen_categories=len(unseen),
            unseen_share=sum(c for _, c in unseen) / rows,
            unseen_examples=[k for k, _ in unseen[:UNSEEN_SHOWN]],
            unseen_exact=OTHER not in known,
        )
    return found


def _profile_kind(reference: Table | Profile, name: str) -> Kind | None:
    if isinstance(reference, Profile):
        sketch = reference.sketches.get(name)
        return sketch.kind if sketch is not None else None
    return _reference_kind(reference, name)


def _skipped(name: str, kind: str, message: str, metric: str | None = None) -> ColumnDrift:
    return ColumnDrift(name, kind, metric, None, None, None, message=message)


def _compare_column(
    name: str,
    reference: Table | Profile,
    current: Table,
    read: Future[tuple[pa.ChunkedArray | None, pa.ChunkedArray]],
    metric: DriftMetric | None,
    threshold: float | None,
    exact_limit: int,
    chart: bool,
) -> ColumnDrift:
    if isinstance(reference, Profile):  # the sketch was computed once, when the profile was
        if name in reference.skipped:
            return _skipped(name, "unknown", reference.skipped[name])
        sketch = reference.sketches[name]
        kind: Kind | None = sketch.kind
        chosen = _metric_for(sketch.kind, sketch.count, metric, threshold, exact_limit)
        ref_notes: tuple[str, ...] = reference.notes.get(name, ())
        cur_data = read.result()[1]
    else:
        kind = _reference_kind(reference, name)
        if kind is None:
            return _skipped(name, str(reference.schema.field(name).type), "this type is not compared for drift")
        ref_data, cur_data = read.result()
        assert ref_data is not None
        ref_col = prepare_column(name, ref_data, kind)
        del ref_data
        if kind == NUMERIC and distinct_at_most(ref_col.values, FEW_DISTINCT) and ref_col.count:  # type: ignore[arg-type]
            kind = CATEGORICAL
            ref_col = as_categorical(ref_col)
        if ref_col.count == 0:
            return _skipped(
                name, kind, f"every reference value is null ({ref_col.rows:,} rows); nothing to compare with"
            )
        chosen = _metric_for(kind, ref_col.count, metric, threshold, exact_limit)
        sketch = chosen.sketch(ref_col)
        ref_notes = ref_col.notes
        del ref_col
    assert kind is not None
    cur_col = prepare_column(name, cur_data, kind)
    del cur_data
    metric_name = chosen.name
    if isinstance(chosen, PredictionDrift):
        metric_name = f"prediction:{chosen.delegate(kind, sketch.count).name}"
    notes = [f"reference: {n}" for n in (*ref_notes, *filter(None, [reference.notes.get(name)]))]
    notes += [f"current: {n}" for n in (*cur_col.notes, *filter(None, [current.notes.get(name)]))]
    detail: dict[str, Any] = {
        "null_share": {
            "reference": sketch.nulls / (sketch.count + sketch.nulls),
            "current": cur_col.nulls / cur_col.rows if cur_col.rows else None,
        }
    }
    if cur_col.rows == 0:
        return _skipped(name, kind, "the current data has no rows", metric_name)
    detail["quality"] = quality(sketch, cur_col)
    if cur_col.count == 0:
        what = "null" if not cur_col.dropped else "null or unreadable as numbers"
        return ColumnDrift(
            name,
            kind,
            metric_name,
            None,
            None,
            True,
            detail,
            message=f"every current value is {what} ({cur_col.rows:,} rows) while the reference has values",
        )
    score = chosen.score(sketch, cur_col)
    detail.update(score.detail)
    detail.pop("metric", None)
    return ColumnDrift(
        name,
        kind,
        metric_name,
        score.value,
        score.threshold,
        score.drifted,
        detail,
        message="; ".join(notes) or None,
        chart=_chart(kind, cur_col, sketch) if chart else None,
    )


def _metric_for(
    kind: Kind, count: int, metric: DriftMetric | None, threshold: float | None, exact_limit: int
) -> DriftMetric:
    """``metric`` where it applies to the column's kind, else the kind's default (with ``threshold``, if any)."""
    if metric is not None and metric.applies_to(kind):
        return metric
    chosen = default_metric(kind, count, exact_limit=exact_limit)
    return type(chosen)(threshold, exact_limit=exact_limit) if threshold is not None else chosen


def compute_drift(
    reference: Table | Profile,
    current: Table,
    *,
    metric: str | DriftMetric | None = None,
    columns: Iterable[str] | None = None,
    threshold: float | None = None,
    thresholds: Mapping[str, float] | None = None,
    prediction: str | None = None,
    drift_share: float = DEFAULT_DRIFT_SHARE,
    exact_limit: int = DEFAULT_EXACT_LIMIT,
    chart: bool = False,
) -> DriftReport:
    """Compare ``current`` with ``reference`` column by column (``reference``: a table, or a stored profile of one).

    Args:
        metric: one metric (name or instance) for every column it applies to; other columns get their default.
        columns: only these columns (default: every column of the reference).
        threshold: the threshold of ``metric`` (needs ``metric``).
        thresholds: per column thresholds, for whichever metric the column is scored with.
        prediction: the model's prediction column, scored with the prediction-drift metric.
        drift_share: share of drifted columns at which the data set counts as drifted.
        exact_limit: values per side up to which KS and Wasserstein are exact.
        chart: keep both sides' distributions for the HTML report.

    Raises:
        BadInput: an unknown metric or column, a threshold out of range.
    """
    started = time.perf_counter()
    if not 0 < drift_share <= 1:
        raise BadInput(f"drift_share {drift_share!r} must be above 0 and at most 1 (e.g. 0.5).")
    if threshold is not None and metric is None:
        raise BadInput(
            f"Threshold {threshold!r} needs a metric: thresholds differ by metric (a p-value for ks and chi2, a "
            "distance for wasserstein, js and psi). Name one with --metric, or give per-column thresholds."
        )
    chosen = get_metric(metric, threshold, exact_limit=exact_limit) if isinstance(metric, str) else metric
    ref_names = reference.columns
    cur_names = set(current.columns)
    if columns is not None:
        wanted = list(dict.fromkeys(columns))
        for name in wanted:
            if name not in ref_names and name not in cur_names:
                raise BadInput(
                    f"No column {name!r} in the reference or the current data.{did_you_mean(name, ref_names)}",
                    column=name,
                )
    else:
        wanted = list(ref_names)
    if prediction is not None and prediction not in ref_names:
        raise BadInput(
            f"Prediction column {prediction!r} is not in the reference.{did_you_mean(prediction, ref_names)}"
        )
    missing = {
        "in_current": [n for n in wanted if n in ref_names and n not in cur_names],
        "in_reference": [n for n in (wanted if columns is not None else current.columns) if n not in ref_names],
    }
    messages = []
    if missing["in_current"]:
        messages.append(f"Columns of the reference missing from the current data: {', '.join(missing['in_current'])}.")
    if missing["in_reference"]:
        messages.append(f"Columns of the current data not in the reference: {', '.join(missing['in_reference'])}.")
    if current.rows == 0:
        messages.append(f"The current data ({current.label}) has no rows: nothing to compare.")
    if reference.rows == 0:
        messages.append(f"The reference ({reference.label}) has no rows: nothing to compare with.")
    results = _compare_columns(reference, current, wanted, chosen, thresholds or {}, prediction, exact_limit, chart)
    judged = [r for r in results if r.drifted is not None]
    share = sum(1 for r in judged if r.drifted) / len(judged) if judged else 0.0
    return DriftReport(
        reference=reference.label,
        current=current.label,
        columns=results,
        rows={"reference": reference.rows, "current": current.rows},
        share_drifted=share,
        drifted=bool(judged) and share >= drift_share,
        drift_share=drift_share,
        seconds=round(time.perf_counter() - started, 4),
        missing=missing,
        messages=messages,
    )


def _compare_columns(
    reference: Table | Profile,
    current: Table,
    wanted: list[str],
    chosen: DriftMetric | None,
    thresholds: Mapping[str, float],
    prediction: str | None,
    exact_limit: int,
    chart: bool,
) -> list[ColumnDrift]:
    ref_names = set(reference.columns)
    cur_names = set(current.columns)
    results: list[ColumnDrift] = []
    compared = [n for n in wanted if n in ref_names and n in cur_names] if reference.rows else []
    # One column ahead is read in a thread while this one is scored (Parquet decoding releases the GIL).
    with ThreadPoolExecutor(1, thread_name_prefix="conveyor-drift-read") as pool:
        reads: dict[str, Future[tuple[pa.ChunkedArray | None, pa.ChunkedArray]]] = {}

        def read_ahead(index: int) -> None:
            if index < len(compared):
                name = compared[index]
                ref = None if isinstance(reference, Profile) else reference
                reads[name] = pool.submit(lambda: (ref.column(name) if ref else None, current.column(name)))

        read_ahead(0)
        position = 0  # of ``name`` in ``compared``
        for name in wanted:
            if name not in ref_names or name not in cur_names:
                side = "current data" if name in ref_names else "reference"
                kind = _reference_kind(current, name) if name not in ref_names else _profile_kind(reference, name)
                results.append(_skipped(name, kind or "unknown", f"missing from the {side}"))
                continue
            if not reference.rows:
                results.append(_skipped(name, _profile_kind(reference, name) or "unknown", "the reference is empty"))
                continue
            position += 1
            read_ahead(position)
            column_metric = chosen
            column_threshold = thresholds.get(name)
            if name == prediction:
                column_metric = PredictionDrift(column_threshold, exact_limit=exact_limit)
            elif chosen is not None and name in thresholds:
                column_metric = type(chosen)(column_threshold, exact_limit=exact_limit)
            results.append(
                _compare_column(
                    name, reference, current, reads.pop(name), column_metric, column_threshold, exact_limit, chart
                )
            )
    return results
