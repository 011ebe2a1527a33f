"""Drift metrics behind one contract: a reference sketch is built once from a column, then each current column is
scored against it, giving a value and whether it drifted under the metric's threshold.

The reference sketch of a numeric column keeps its values at :data:`SKETCH_BINS` quantiles with the exact
cumulative share and sum of the values up to each, plus every value (sorted) when there are at most
``exact_limit`` of them. A metric is *exact* when both sides fit under that bound (KS and Wasserstein then equal
SciPy's), else it works from the sketch and reports a bound on its error (``error_bound``): see
docs/monitoring.md. A categorical sketch counts the :data:`TOP_K` most frequent categories and the rest as one.

New metrics register under the entry-point group ``conveyor.drift_metrics`` (a subclass of
:class:`DriftMetric`); :func:`drift_metrics` lists the built-in ones and those.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from conveyor.errors import BadInput, did_you_mean
from conveyor.monitor._columns import CATEGORICAL, NUMERIC, Column, Kind

__all__ = [
    "DEFAULT_EXACT_LIMIT",
    "SMALL_REFERENCE",
    "CategoricalSketch",
    "ChiSquared",
    "DriftMetric",
    "JensenShannon",
    "KolmogorovSmirnov",
    "NumericSketch",
    "PopulationStability",
    "PredictionDrift",
    "Score",
    "Sketch",
    "Wasserstein",
    "default_metric",
    "drift_metrics",
    "get_metric",
    "sketch_column",
]

Array = np.ndarray[Any, np.dtype[np.float64]]

SKETCH_BINS = 2000
"""Quantile cells of a numeric reference sketch (KS error in sketch mode is at most one cell's share)."""
DEFAULT_EXACT_LIMIT = 200_000
"""Values per side up to which KS and Wasserstein are computed exactly from every value."""
TOP_K = 1000
"""Categories a categorical sketch counts one by one; the rest are counted together as ``OTHER``."""
OTHER = "\x00other"
SMALL_REFERENCE = 1000
"""Up to this many reference values, defaults are statistical tests (KS, chi-squared); above, distances."""
EPSILON = 1e-4
"""Share given to an empty bin in PSI and Jensen–Shannon (as Evidently), so neither is infinite."""


# -- sketches ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NumericSketch:
    """What a numeric reference column is compared from.

    ``edges`` are reference values (ascending, distinct, first = minimum, last = maximum); ``cdf[k]`` is the exact
    share of reference values ``<= edges[k]``; ``sums[k]`` the sum of the values in ``(edges[k-1], edges[k]]``
    (``sums[0]``: those equal to the minimum). ``sample`` holds every value, sorted, up to the exact limit.
    """

    count: int
    nulls: int
    mean: float
    std: float
    edges: Array
    cdf: Array
    sums: Array
    sample: Array | None = None
    kind: ClassVar[Kind] = NUMERIC

    @property
    def minimum(self) -> float:
        return float(self.edges[0])

    @property
    def maximum(self) -> float:
        return float(self.edges[-1])


@dataclass(frozen=True)
class CategoricalSketch:
    """Counts of a categorical reference column: the top categories one by one, the rest under ``OTHER``."""

    count: int
    nulls: int
    counts: dict[str, int]
    kind: ClassVar[Kind] = CATEGORICAL


Sketch = NumericSketch | CategoricalSketch


def _segment_sums(values: Array, ends: np.ndarray[Any, np.dtype[np.int64]]) -> Array:
    """Sums of ``values[ends[k-1]:ends[k]]`` (from 0 for k = 0), in one pass and without a cumulative copy."""
    starts = np.concatenate(([0], ends[:-1]))
    if values.size == 0:
        return np.zeros(ends.size)
    sums = np.add.reduceat(values, np.minimum(starts, values.size - 1))
    return np.where(ends > starts, sums, 0.0)


def sketch_column(column: Column, *, exact_limit: int = DEFAULT_EXACT_LIMIT, bins: int = SKETCH_BINS) -> Sketch:
    """The reference sketch of a prepared column (numeric values must be sorted, as :func:`prepare_column` leaves
    them).

    Raises:
        BadInput: the column has no values to compare against.
    """
    if column.count == 0:
        raise BadInput(f"Column {column.name!r} has no values in the reference (all null); nothing to compare with.")
    if column.kind == CATEGORICAL:
        assert column.counts is not None
        counts = column.counts
        if len(counts) > TOP_K:
            ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            counts = dict(ranked[:TOP_K])
            counts[OTHER] = sum(c for _, c in ranked[TOP_K:])
        return CategoricalSketch(column.count, column.nulls, dict(counts))
    values = column.values
    assert values is not None
    n = int(values.size)
    positions = np.unique(np.round(np.linspace(0, n - 1, min(bins, n - 1) + 1)).astype(np.int64))
    edges = np.unique(values[positions])
    ends = np.searchsorted(values, edges, side="right")
    sums = _segment_sums(values, ends)
    mean = float(sums.sum() / n)
    return NumericSketch(
        count=n,
        nulls=column.nulls,
        mean=mean,
        std=float(np.std(values)),
        edges=edges,
        cdf=ends / n,
        sums=sums,
        sample=values.copy() if n <= exact_limit else None,
    )


# -- the contract ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """A metric's verdict on one column: its value, the threshold, whether it drifted, and details (the KS
    statistic, the mode, an error bound...)."""

    value: float
    threshold: float
    drifted: bool
    detail: dict[str, Any] = field(default_factory=dict)


class DriftMetric(ABC):
    """A drift metric: :meth:`sketch` a reference column once, then :meth:`score` current columns against it.

    Subclasses set ``name``, ``kinds`` (the column kinds it applies to), ``default_threshold`` and
    ``is_p_value`` (drift when the value is *below* the threshold, as for a test's p-value; otherwise at or
    above it), and implement :meth:`measure`. Every metric passes the contract tests in
    ``tests/monitor/test_metric_contract.py``.
    """

    name: ClassVar[str]
    kinds: ClassVar[frozenset[Kind]]
    default_threshold: ClassVar[float]
    is_p_value: ClassVar[bool] = False

    def __init__(self, threshold: float | None = None, *, exact_limit: int = DEFAULT_EXACT_LIMIT) -> None:
        if threshold is not None and not (
            isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0
        ):
            raise BadInput(f"Threshold {threshold!r} for {self.name} must be a positive number.")
        if threshold is not None and self.is_p_value and threshold >= 1:
            raise BadInput(
                f"Threshold {threshold!r} for {self.name} is a p-value and must be between 0 and 1 (e.g. 0.05)."
            )
        self.threshold = float(threshold) if threshold is not None else self.default_threshold
        self.exact_limit = exact_limit

    def applies_to(self, kind: Kind) -> bool:
        return kind in self.kinds

    def sketch(self, reference: Column) -> Sketch:
        """The reference sketch (built once, reused for every current column scored against it)."""
        return sketch_column(reference, exact_limit=self.exact_limit)

    @abstractmethod
    def measure(self, reference: Sketch, current: Column) -> tuple[float, dict[str, Any]]:
        """The metric's value for ``current`` against the sketch, and details."""

    def score(self, reference: Sketch, current: Column) -> Score:
        """Measure and judge: drifted when the value passes the threshold.

        Raises:
            BadInput: the column's kind is not one this metric applies to, or the current side has no values.
        """
        if not self.applies_to(current.kind) or reference.kind != current.kind:
            raise BadInput(
                f"Metric {self.name!r} does not apply to {current.kind} column {current.name!r}; it applies to "
                f"{' and '.join(sorted(self.kinds))} columns."
            )
        if current.count == 0:
            raise BadInput(f"Column {current.name!r} has no values in the current data; nothing to score.")
        value, detail = self.measure(reference, current)
        drifted = value < self.threshold if self.is_p_value else value >= self.threshold
        return Score(float(value), self.threshold, bool(drifted), detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold})"


# -- numeric helpers ------------------------------------------------------------------------------------------------


def _exact(reference: Sketch, current: Column, limit: int) -> bool:
    return isinstance(reference, NumericSketch) and reference.sample is not None and current.count <= limit


def ks_statistic(a: Array, b: Array) -> float:
    """The two-sample KS statistic of two sorted arrays (SciPy's computation)."""
    both = np.concatenate((a, b))
    cdf_a = np.searchsorted(a, both, side="right") / a.size
    cdf_b = np.searchsorted(b, both, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def wasserstein(u: Array, v: Array, u_weights: Array | None = None, v_weights: Array | None = None) -> float:
    """The 1-Wasserstein distance between two sorted samples (optionally weighted), as SciPy computes it."""
    both = np.concatenate((u, v))
    both.sort(kind="mergesort")
    deltas = np.diff(both)
    u_idx = np.searchsorted(u, both[:-1], side="right")
    v_idx = np.searchsorted(v, both[:-1], side="right")
    if u_weights is None:
        u_cdf = u_idx / u.size
    else:
        cum = np.concatenate(([0.0], np.cumsum(u_weights)))
        u_cdf = cum[u_idx] / cum[-1]
    if v_weights is None:
        v_cdf = v_idx / v.size
    else:
        cum = np.concatenate(([0.0], np.cumsum(v_weights)))
        v_cdf = cum[v_idx] / cum[-1]
    return float(np.dot(np.abs(u_cdf - v_cdf), deltas))


def _current_cells(sketch: NumericSketch, values: Array) -> tuple[Array, Array, Array]:
    """The current values' cumulative share at each edge, their counts per cell ``(-inf, e0], (e0, e1], ...,
    (e_last, inf)`` and their sums per cell."""
    ends = np.searchsorted(values, sketch.edges, side="right")
    bounds = np.concatenate((ends, [values.size]))
    counts = np.diff(bounds, prepend=0).astype(np.float64)
    return ends / values.size, counts, _segment_sums(values, bounds)


def _shares_at(sketch: NumericSketch, current: Column, bins: int) -> tuple[Array, Array, Array]:
    """Reference and current shares in ``bins`` bins cut at reference quantiles (coarse edges picked among the
    sketch's edges, where the reference's share is exact), open-ended at both ends; and the cut points."""
    assert current.values is not None
    levels = np.arange(1, bins) / bins
    picked = np.unique(np.minimum(np.searchsorted(sketch.cdf, levels, side="left"), sketch.edges.size - 1))
    picked = picked[sketch.cdf[picked] < 1.0]
    ref_cdf = np.concatenate(([0.0], sketch.cdf[picked], [1.0]))
    cur_cdf = np.concatenate(
        ([0.0], np.searchsorted(current.values, sketch.edges[picked], side="right") / current.values.size, [1.0])
    )
    return np.diff(ref_cdf), np.diff(cur_cdf), sketch.edges[picked]


def _category_shares(reference: CategoricalSketch, current: Column) -> tuple[list[str], Array, Array, Array, Array]:
    """Categories of both sides (current categories beyond the reference's top ones count as its ``OTHER``) with
    counts and shares."""
    assert current.counts is not None
    known = reference.counts
    folded: dict[str, int] = {}
    for key, count in current.counts.items():
        target = key if key in known or OTHER not in known else OTHER
        folded[target] = folded.get(target, 0) + count
    keys = sorted(set(known) | set(folded))
    ref = np.array([known.get(k, 0) for k in keys], dtype=np.float64)
    cur = np.array([folded.get(k, 0) for k in keys], dtype=np.float64)
    return keys, ref, cur, ref / ref.sum(), cur / cur.sum()


def _psi(p: Array, q: Array) -> float:
    p = np.where(p == 0, EPSILON, p)
    q = np.where(q == 0, EPSILON, q)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(p: Array, q: Array) -> float:
    """Jensen–Shannon distance (natural logarithm, as SciPy's default) between two share vectors."""
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(math.sqrt(max(float(np.sum(left) + np.sum(right)) / 2.0, 0.0)))


# -- the metrics ----------------------------------------------------------------------------------------------------


class KolmogorovSmirnov(DriftMetric):
    """Two-sample Kolmogorov–Smirnov test on numeric columns. The value is the p-value (drift below 0.05);
    ``detail`` has the ``statistic``. Exact mode equals ``scipy.stats.ks_2samp``."""

    name = "ks"
    kinds = frozenset({NUMERIC})
    default_threshold = 0.05
    is_p_value = True

    def measure(self, reference: Sketch, current: Column) -> tuple[float, dict[str, Any]]:
        from scipy import stats  # type: ignore[import-untyped]  # scikit-learn's dependency; no stubs

        assert isinstance(reference, NumericSketch) and current.values is not None
        n1, n2 = reference.count, current.count
        if _exact(reference, current, self.exact_limit):
            assert reference.sample is not None
            if max(n1, n2) <= 10_000:  # SciPy's own exact p-value, as its default method picks
                with warnings.catch_warnings():  # SciPy falls back to the asymptotic p-value and says so
                    warnings.simplefilter("ignore", RuntimeWarning)
                    found = stats.ks_2samp(reference.sample, current.values)
                return float(found.pvalue), {"statistic": float(found.statistic), "mode": "exact"}
            statistic = ks_statistic(reference.sample, current.values)
            bound = 0.0
            mode = "exact"
        else:
            cur_cdf, _, _ = _current_cells(reference, current.values)
            below = float(np.searchsorted(current.values, reference.edges[0], side="left") / n2)
            statistic = max(float(np.max(np.abs(reference.cdf - cur_cdf))), below)
            # Inside a cell both CDFs stay between their values at its two edges.
            f, g = reference.cdf, cur_cdf
            upper = max(statistic, float(np.max(np.abs(f[1:] - g[:-1]), initial=0.0)))
            upper = max(upper, float(np.max(np.abs(g[1:] - f[:-1]), initial=0.0)))
            bound = upper - statistic
            mode = "sketch"
        m, n = sorted([float(n1), float(n2)], reverse=True)
        pvalue = float(np.clip(stats.kstwo.sf(statistic, np.round(m * n / (m + n))), 0.0, 1.0))
        return pvalue, {"statistic": statistic, "mode": mode, "error_bound": bound}


class Wasserstein(DriftMetric):
    """Wasserstein (earth mover's) distance divided by the reference's standard deviation (at least 0.001, as
    Evidently), on numeric columns; drift at 0.1. Exact mode equals ``scipy.stats.wasserstein_distance`` (over the
    same divisor)."""

    name = "wasserstein"
    kinds = frozenset({NUMERIC})
    default_threshold = 0.1

    def measure(self, reference: Sketch, current: Column) -> tuple[float, dict[str, Any]]:
        assert isinstance(reference, NumericSketch) and current.values is not None
        scale = max(reference.std, 0.001)
        if _exact(reference, current, self.exact_limit):
            assert reference.sample is not None
            distance = wasserstein(reference.sample, current.values)
            return distance / scale, {"distance": distance, "mode": "exact", "error_bound": 0.0}
        # Each cell's mass sits at its mean: each side moves at most half a cell's width per unit of mass.
        _, cur_counts, cur_sums = _current_cells(reference, current.values)
        ref_counts = np.concatenate((np.diff(reference.cdf, prepend=0.0) * reference.count, [0.0]))
        ref_sums = np.concatenate((reference.sums, [0.0]))
        ref_keep = ref_counts > 0
        cur_keep = cur_counts > 0
        ref_atoms = ref_sums[ref_keep] / ref_counts[ref_keep]
        cur_atoms = cur_sums[cur_keep] / cur_counts[cur_keep]
        ref_order = np.argsort(ref_atoms, kind="mergesort")
        cur_order = np.argsort(cur_atoms, kind="mergesort")
        distance = wasserstein(
            ref_atoms[ref_order], cur_atoms[cur_order], ref_counts[ref_keep][ref_order], cur_counts[cur_keep][cur_order]
        )
        widths = np.diff(reference.edges, prepend=reference.edges[0])
        widths = np.concatenate((widths, [max(float(current.values[-1]) - reference.maximum, 0.0)]))
        widths[0] = max(reference.minimum - float(current.values[0]), 0.0)
        bound = float(np.dot(ref_counts / reference.count + cur_counts / current.count, widths) / 2.0)
        return distance / scale, {"distance": distance, "mode": "sketch", "error_bound": bound / scale}


class _BinnedShares(DriftMetric):
    """A metric over the shares of reference deciles (numeric) or categories (categorical) on both sides."""

    bins = 10

    def shares(self, reference: Sketch, current: Column) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(reference, NumericSketch):
            p, q, _ = _shares_at(reference, current, self.bins)
        else:
            _, _, _, p, q = _category_shares(reference, current)
        return p, q


class PopulationStability(_BinnedShares):
    """Population stability index over reference deciles (numeric) or categories; empty bins count 0.0001;
    drift at 0.1."""

    name = "psi"
    kinds = frozenset({NUMERIC, CATEGORICAL})
    default_threshold = 0.1

    def measure(self, reference: Sketch, current: Column) -> tuple[float, dict[str, Any]]:
        p, q = self.shares(reference, current)
        return _psi(p, q), {"bins": int(p.size)}


class JensenShannon(_BinnedShares):
    """Jensen–Shannon distance (natural log, between 0 and about 0.83) over reference deciles (numeric) or
    categories; drift at 0.1. Equals ``scipy.spatial.distance.jensenshannon`` of the two share vectors."""

    name = "js"
    kinds = frozenset({NUMERIC, CATEGORICAL})
    default_threshold = 0.1

    def measure(self, reference: Sketch, current: Column) -> tuple[float, dict[str, Any]]:
        p, q = self.shares(reference, current)
        return jensen_shannon(p, q), {"bins": int(p.size)}


class ChiSquared(DriftMetric):
    """Pearson's chi-squared test of homogeneity on the categories' counts of both sides (a 2 × K table, as
    ``scipy.stats.chi2_contingency`` without correction); the value is the p-value, drift below 0.05."""

    name = "chi2"
    kinds = frozenset({CATEGORICAL})
    default_threshold = 0.05
    is_p_value = True

    def measure(self, reference: Sketch, current: Column) -> tuple[float, dict[str, Any]]:
        from scipy import stats

        assert isinstance(reference, CategoricalSketch)
        keys, ref, cur, _, _ = _category_shares(reference, current)
        if len(keys) < 2:
            return 1.0, {"statistic": 0.0, "dof": 0}
        table = np.vstack((ref, cur))
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        statistic = float(np.sum((table - expected) ** 2 / expected))
        dof = len(keys) - 1
        return float(stats.chi2.sf(statistic, dof)), {"statistic": statistic, "dof": dof}


class PredictionDrift(DriftMetric):
    """Drift of a model's predictions: the default metric for the prediction column's kind and size (Wasserstein
    or KS for scores and regressions, Jensen–Shannon or chi-squared for labels), under this metric's threshold
    when one is given."""

    name = "prediction"
    kinds = frozenset({NUMERIC, CATEGORICAL})
    default_threshold = math.nan

    def __init__(self, threshold: float | None = None, *, exact_limit: int = DEFAULT_EXACT_LIMIT) -> None:
        if threshold is not None:
            DriftMetric.__init__(self, threshold, exact_limit=exact_limit)
        self.threshold = math.nan if threshold is None else float(threshold)
        self._given = threshold
        self.exact_limit = exact_limit

    def delegate(self, kind: Kind, count: int) -> DriftMetric:
        metric = type(default_metric(kind, count))
        return metric(self._given, exact_limit=self.exact_limit)

    def measure(self, reference: Sketch, current: Column) -> tuple[float, dict[str, Any]]:
        found = self.score(reference, current)
        return found.value, found.detail

    def score(self, reference: Sketch, current: Column) -> Score:
        if current.count == 0:
            raise BadInput(f"Column {current.name!r} has no values in the current data; nothing to score.")
        inner = self.delegate(reference.kind, reference.count)
        found = inner.score(reference, current)
        return Score(found.value, found.threshold, found.drifted, {**found.detail, "metric": inner.name})


# -- the registry ---------------------------------------------------------------------------------------------------

_BUILT_IN: dict[str, type[DriftMetric]] = {
    m.name: m for m in (PopulationStability, JensenShannon, Wasserstein, KolmogorovSmirnov, ChiSquared, PredictionDrift)
}
ENTRY_POINT_GROUP = "conveyor.drift_metrics"


def drift_metrics() -> dict[str, type[DriftMetric]]:
    """Every drift metric by name: the built-in ones, then those other packages register under the entry-point
    group ``conveyor.drift_metrics`` (a built-in name cannot be replaced).

    Raises:
        BadInput: an entry point does not load or is not a :class:`DriftMetric` subclass.
    """
    from importlib.metadata import entry_points

    found = dict(_BUILT_IN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in found:
            continue
        try:
            loaded = point.load()
        except Exception as exc:  # a plug-in's import failure is the plug-in's, named here
            raise BadInput(
                f"Drift metric {point.name!r} ({point.value}) failed to load: {exc}. Fix or uninstall the package "
                "that registers it."
            ) from exc
        if not (isinstance(loaded, type) and issubclass(loaded, DriftMetric)):
            raise BadInput(f"Drift metric {point.name!r} ({point.value}) is not a DriftMetric subclass.")
        found[point.name] = loaded
    return found


def get_metric(name: str, threshold: float | None = None, *, exact_limit: int = DEFAULT_EXACT_LIMIT) -> DriftMetric:
    """A metric by name, with its threshold (default: the metric's own).

    Raises:
        BadInput: no metric has that name (the message lists them), or the threshold is out of range.
    """
    known = drift_metrics()
    if name not in known:
        raise BadInput(
            f"No drift metric named {name!r}.{did_you_mean(name, known)} Known metrics: {', '.join(sorted(known))}.",
            metric=name,
        )
    return known[name](threshold, exact_limit=exact_limit)


def default_metric(kind: Kind, reference_count: int, *, exact_limit: int = DEFAULT_EXACT_LIMIT) -> DriftMetric:
    """The metric used when none is asked for, as Evidently picks: up to :data:`SMALL_REFERENCE` reference values
    a test (KS for numbers, chi-squared for categories), above it a distance (normalised Wasserstein for numbers,
    Jensen–Shannon for categories)."""
    small = reference_count <= SMALL_REFERENCE
    if kind == NUMERIC:
        return KolmogorovSmirnov(exact_limit=exact_limit) if small else Wasserstein(exact_limit=exact_limit)
    return ChiSquared(exact_limit=exact_limit) if small else JensenShannon(exact_limit=exact_limit)
