"""Data profiles: per-column statistics of one version, an HTML report with charts, and the shifts between two.

A profile is a plain, JSON-ready dict (no NaN or infinity anywhere: a statistic that does not exist is ``None``)::

    {"profile_version": 1, "rows": N, "columns": {name: {
        "position", "type", "kind",            # kind: numeric | boolean | string | temporal | other
        "count", "nulls", "null_fraction",     # count: non-null values
        "distinct", "distinct_approximate",
        "min", "max", "mean", "std",           # numbers; ISO strings for dates and datetimes
        "quantiles": {"p01", ..., "p99"}, "quantiles_approximate",
        "top": [{"value", "count"}, ...],      # the 10 most frequent values, for columns of few distinct values
        "histogram": {"edges": [...], "counts": [...]},
        "nan", "infinite",                     # float columns only: values kept out of every statistic
        "length_bytes": {"min", "max", "mean"},  # string columns only
    }}}

How it is computed, and what is exact (see :func:`compute_profile` for the passes):

- Counts, nulls, min, max, mean, std (sample, ``ddof=1``), histograms and top values are exact.
- ``distinct`` is exact up to :data:`EXACT_LIMIT` rows, and for columns of at most :data:`TOP_MAX_DISTINCT`
  distinct values (they are counted value by value); otherwise it is estimated by distinct sampling
  (``distinct_approximate``; off by about 0.4 % on millions of distinct values, a few % on tens of thousands).
- Quantiles (linear interpolation, like numpy and pandas) are exact up to :data:`EXACT_LIMIT` rows; beyond,
  they are those of a systematic sample of every k-th row (``quantiles_approximate``; rank error about 0.2 %),
  so the same data always gives the same profile.
- ``top`` (the :data:`TOP_K` most frequent values, ties by value) is given for booleans and for columns of at
  most :data:`TOP_MAX_DISTINCT` distinct values where some value repeats.
- Histograms have :data:`BINS` equal-width bins from min to max, a value ``x`` falling in bin
  ``floor((x - min) / width)`` (the maximum in the last); integer columns get whole-number widths (one bin per
  value when there are few), dates whole days and datetimes whole seconds, minutes, hours or days.
- NaN and infinities in float columns are counted (``nan``, ``infinite``) and kept out of every other statistic.
- The order of ``columns`` is the file's; ``position`` keeps it where a JSON store does not (PostgreSQL JSONB).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeGuard

from conveyor.data._formats import logical_type

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "BINS",
    "EXACT_LIMIT",
    "PROFILE_VERSION",
    "QUANTILES",
    "TOP_K",
    "TOP_MAX_DISTINCT",
    "compute_profile",
    "diff_profiles",
    "render_profile_html",
    "shared_histograms",
]

PROFILE_VERSION: Final = 1
#: Distinct counts and quantiles are exact up to this many values, estimated beyond.
EXACT_LIMIT: Final = 100_000
#: Top values are counted for columns of at most this many distinct values.
TOP_MAX_DISTINCT: Final = 10_000
TOP_K: Final = 10
BINS: Final = 20
QUANTILES: Final[dict[str, float]] = {
    "p01": 0.01,
    "p05": 0.05,
    "p25": 0.25,
    "p50": 0.5,
    "p75": 0.75,
    "p95": 0.95,
    "p99": 0.99,
}
_SEED: Final = 0
_HASHES: Final = 1 << 64

Kind = Literal["numeric", "boolean", "string", "temporal", "other"]


# -- computing a profile -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    position: int
    name: str
    type: str
    kind: Kind
    dtype: pl.DataType

    @property
    def key(self) -> str:
        """The column's name in the queries (positional, so no user name is ever read as a regex or wildcard)."""
        return f"c{self.position}"

    @property
    def is_float(self) -> bool:
        return self.kind == "numeric" and self.dtype.is_float()

    @property
    def whole(self) -> bool:
        """Binned on whole numbers: integers, dates and datetimes (by their physical integers)."""
        return self.kind == "temporal" or (self.kind == "numeric" and self.dtype.is_integer())

    @property
    def countable(self) -> bool:
        """Whether distinct values are counted: not for booleans (two at most) nor nested types."""
        return self.kind != "boolean" and not self.dtype.is_nested()

    def granule(self, low: Any, high: Any) -> int:
        """The unit of a datetime column's bin widths: the longest of a day, an hour, a minute and a second that
        still gives :data:`BINS` bins over ``low``..``high`` (in the column's time unit)."""
        import polars as pl

        if not isinstance(self.dtype, pl.Datetime) or not isinstance(low, int) or not isinstance(high, int):
            return 1
        second = {"ns": 10**9, "us": 10**6, "ms": 10**3}[self.dtype.time_unit or "us"]
        for seconds in (86_400, 3_600, 60, 1):
            if high - low >= BINS * seconds * second:
                return seconds * second
        return 1


@dataclass(frozen=True)
class Bins:
    """``count`` equal-width bins of ``width`` from ``low``: ``[e_k, e_k+1)``, the last one closed at ``high``
    (``whole``: whole-number edges, the last one past ``high``)."""

    low: int | float
    high: int | float
    width: int | float
    count: int
    whole: bool

    @classmethod
    def spanning(cls, low: Any, high: Any, *, whole: bool, granule: int = 1, bins: int = BINS) -> Bins:
        """Bins from ``low`` to ``high``. ``whole``: integers (physical ones for dates and datetimes), binned in
        whole multiples of ``granule`` from a multiple of it (when the range allows; else as floats)."""
        if whole and isinstance(low, int) and isinstance(high, int) and -(2**62) <= low <= high < 2**62:
            low = low - low % granule
            width = granule * max(1, -(-(high - low + 1) // (bins * granule)))
            return cls(low, high, width, -(-(high - low + 1) // width), whole=True)
        low, high = float(low), float(high)
        span = high - low
        if span <= 0 or not math.isfinite(bins / span):
            return cls(low, high, 0.0, 1, whole=False)
        return cls(low, high, span / bins, bins, whole=False)

    @property
    def edges(self) -> list[int | float]:
        if self.whole:
            return [self.low + k * self.width for k in range(self.count + 1)]
        return [self.low + k * self.width for k in range(self.count)] + [self.high]

    def index(self, values: pl.Expr) -> pl.Expr:
        """Each value's bin: ``floor((x - low) / width)`` as a small integer (``count`` for the maximum of a float
        column, folded into the last bin by :meth:`counts`)."""
        import polars as pl

        if self.whole:
            return ((values.cast(pl.Int64) - int(self.low)) // int(self.width)).cast(pl.UInt8)
        if self.width == 0:
            return (values * 0).cast(pl.UInt8, strict=False)
        return ((values - self.low) * (self.count / (self.high - self.low))).cast(pl.UInt8, strict=False)

    def exprs(self, index: str, prefix: str) -> list[pl.Expr]:
        """How many values fall below each inner edge, from the column of bin numbers ``index`` (comparing
        small integers is far cheaper than comparing the values with each edge)."""
        import polars as pl

        return [(pl.col(index) < k).sum().alias(f"{prefix}{k}") for k in range(1, self.count)]

    def counts(self, found: Mapping[str, Any], prefix: str, total: int) -> list[int]:
        below = [0, *(int(found[f"{prefix}{k}"]) for k in range(1, self.count)), total]
        return [below[k + 1] - below[k] for k in range(self.count)]


def compute_profile(parquet_paths: Sequence[Path | str]) -> dict[str, Any]:
    """The profile of the rows in ``parquet_paths`` (the Parquet files of one version, sharing a schema).

    Two passes over the files with Polars' streaming engine (bounded memory, every core). The first counts nulls,
    takes the moments, string lengths and a distinct-value sample, and (in parallel) a systematic sample of the
    numeric columns (every k-th row, at most :data:`EXACT_LIMIT` rows) for the quantiles. The second counts the
    histograms and every value of the low-cardinality columns (exact distinct counts and top values). Float
    columns holding NaN or infinity take one more pass, to summarise their finite values.

    Raises:
        ValueError: no paths were given.
    """
    import polars as pl
    import pyarrow.parquet as pq

    paths = [Path(p) for p in parquet_paths]
    if not paths:
        raise ValueError("compute_profile needs at least one Parquet file")
    rows = sum(int(pq.read_metadata(p).num_rows) for p in paths)
    columns = _plan(paths[0])
    frame = pl.scan_parquet(paths).select([pl.nth(c.position).alias(c.key) for c in columns])
    step = max(1, -(-rows // EXACT_LIMIT))
    sampled = [c for c in columns if c.kind in ("numeric", "temporal")]
    queries = [frame.select([e for c in columns for e in _first_pass(c, rows)])]
    if sampled:
        queries.append(frame.select([pl.col(c.key) for c in sampled]).gather_every(step))
    hashed = [c for c in columns if c.countable and rows > EXACT_LIMIT]
    queries += [_distinct_sample(frame, c, rows) for c in hashed]
    results = pl.collect_all(queries, engine="streaming")
    stats: dict[str, Any] = results[0].row(0, named=True)
    for result in results[2 if sampled else 1 :]:
        stats.update(result.row(0, named=True))
    odd = [c for c in columns if c.is_float and _has_non_finite(stats, c)]
    if odd:
        stats.update(
            frame.select([e for c in odd for e in _non_finite(c)]).collect(engine="streaming").row(0, named=True)
        )
    if sampled:
        stats.update(_quantiles(results[1], sampled, stats, rows))
    plans = {c.key: _plan_column(c, stats, rows) for c in columns}
    stats.update(_second_pass(frame, columns, plans))
    profiled = {c.name: _assemble(c, stats, plans[c.key], rows, sample_is_all=step == 1) for c in columns}
    return {"profile_version": PROFILE_VERSION, "rows": rows, "columns": profiled}


def _plan(path: Path) -> list[_Column]:
    import polars as pl
    import pyarrow.parquet as pq

    arrow_schema = pq.read_schema(path)
    polars_schema = pl.scan_parquet(path).collect_schema()
    return [
        _Column(position, name, logical_type(field.type), _kind(dtype), dtype)
        for position, (field, (name, dtype)) in enumerate(zip(arrow_schema, polars_schema.items(), strict=True))
    ]


def _kind(dtype: pl.DataType) -> Kind:
    import polars as pl

    if dtype == pl.Boolean:
        return "boolean"
    if dtype.is_numeric():
        return "numeric"
    if dtype == pl.Date or isinstance(dtype, pl.Datetime):
        return "temporal"
    if dtype == pl.String or isinstance(dtype, pl.Categorical | pl.Enum):
        return "string"
    return "other"


def _values(column: _Column) -> pl.Expr:
    """The column as numbers to summarise (decimals as floats, dates and datetimes as their integers)."""
    import polars as pl

    expr = pl.col(column.key)
    if column.kind == "temporal":
        return expr.to_physical()
    if isinstance(column.dtype, pl.Decimal):
        return expr.cast(pl.Float64)
    return expr


def _hash_fraction(rows: int) -> float:
    """The share of the hash space distinct sampling keeps: about 2^16 rows' worth (so on 5M distinct values the
    estimate is off by about 1/sqrt(65536), 0.4 %), and at most 1/64."""
    return min(1 / 64, 2**16 / max(rows, 1))


def _distinct_sample(frame: pl.LazyFrame, column: _Column, rows: int) -> pl.LazyFrame:
    """Distinct sampling (Gibbons, 2001): the distinct hashes below a threshold, to scale up by the share of the
    hash space kept. Its error is about 1/sqrt(distinct hashes kept), where Polars' approx_n_unique (HyperLogLog)
    is off by up to ~10 %. Columns it finds to have few distinct values are counted exactly in the second pass.
    (A query of its own: a frame filter streams far cheaper than a filter inside an aggregation.)"""
    import polars as pl

    threshold = pl.lit(int(_hash_fraction(rows) * _HASHES), dtype=pl.UInt64)
    hashes = frame.select(pl.col(column.key).drop_nulls().hash(_SEED).alias("hash"))
    return hashes.filter(pl.col("hash") < threshold).select(pl.col("hash").n_unique().alias(f"{column.key}.hashed"))


def _first_pass(column: _Column, rows: int) -> list[pl.Expr]:
    import polars as pl

    key, expr = column.key, pl.col(column.key)
    exprs = [expr.null_count().alias(f"{key}.nulls")]
    if column.countable and rows <= EXACT_LIMIT:
        exprs.append(expr.drop_nulls().n_unique().alias(f"{key}.distinct"))
    if column.kind in ("numeric", "temporal"):
        values = _values(column)
        exprs += [
            values.min().alias(f"{key}.min"),
            values.max().alias(f"{key}.max"),
            values.mean().alias(f"{key}.mean"),
        ]
        if column.kind == "numeric":
            exprs.append(values.std().alias(f"{key}.std"))
    elif column.kind == "boolean":
        exprs.append(expr.mean().alias(f"{key}.mean"))
    elif column.dtype == pl.String:
        length = expr.str.len_bytes()
        exprs += [
            length.min().alias(f"{key}.len_min"),
            length.max().alias(f"{key}.len_max"),
            length.mean().alias(f"{key}.len_mean"),
        ]
    return exprs


def _has_non_finite(stats: Mapping[str, Any], column: _Column) -> bool:
    """NaN makes the mean NaN and an infinity makes the min or max infinite, so this misses neither."""
    return any(_is_non_finite(stats.get(f"{column.key}.{s}")) for s in ("min", "max", "mean", "std"))


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _finite(column: _Column) -> pl.Expr:
    """The column's values with NaN and infinities as nulls (same length, so it mixes with other columns)."""
    import polars as pl

    values = _values(column)
    return pl.when(values.is_finite()).then(values)


def _summarised(column: _Column, stats: Mapping[str, Any]) -> pl.Expr:
    """The values the numeric statistics are about (nulls aside): finite ones, for floats."""
    odd = stats.get(f"{column.key}.nan") or stats.get(f"{column.key}.infinite")
    return _finite(column) if odd else _values(column)


def _non_finite(column: _Column) -> list[pl.Expr]:
    """NaN and infinity counts, and the moments of the finite values, of a float column that holds any."""
    key, values, finite = column.key, _values(column), _finite(column)
    return [
        values.is_nan().sum().alias(f"{key}.nan"),
        values.is_infinite().sum().alias(f"{key}.infinite"),
        finite.min().alias(f"{key}.min"),
        finite.max().alias(f"{key}.max"),
        finite.mean().alias(f"{key}.mean"),
        finite.std().alias(f"{key}.std"),
    ]


def _summarised_count(column: _Column, stats: Mapping[str, Any], rows: int) -> int:
    key = column.key
    count = rows - int(stats[f"{key}.nulls"])
    return count - int(stats.get(f"{key}.nan") or 0) - int(stats.get(f"{key}.infinite") or 0)


def _ranged(column: _Column, stats: Mapping[str, Any], rows: int) -> bool:
    """Whether the column has numbers to bin and take quantiles of."""
    key = column.key
    return (
        column.kind in ("numeric", "temporal")
        and _summarised_count(column, stats, rows) > 0
        and stats.get(f"{key}.min") is not None
        and stats.get(f"{key}.max") is not None
    )


def _quantiles(sample: pl.DataFrame, columns: Sequence[_Column], stats: Mapping[str, Any], rows: int) -> dict[str, Any]:
    """The quantiles of the sample (every row when there are at most :data:`EXACT_LIMIT`), and its distinct
    values (a floor for the estimate of the column's)."""
    import numpy as np
    import polars as pl

    out: dict[str, Any] = sample.select(
        [pl.col(c.key).drop_nulls().n_unique().alias(f"{c.key}.sample_distinct") for c in columns]
    ).row(0, named=True)
    ranged = [c for c in columns if _ranged(c, stats, rows)]
    if not ranged:
        return out
    values = sample.select([_summarised(c, stats).drop_nulls().implode().alias(c.key) for c in ranged])
    for c in ranged:
        array = values[c.key][0].to_numpy().astype(np.float64, copy=False)
        # numpy's default method is the "linear" interpolation of Polars and pandas.
        for name, q in zip(QUANTILES, np.quantile(array, list(QUANTILES.values())), strict=True):
            out[f"{c.key}.{name}"] = float(q)
    return out


@dataclass(frozen=True)
class _ColumnPlan:
    """What the second pass does for a column."""

    values: int  # how many values the numeric statistics are about (non-null and, for floats, finite)
    summarised: pl.Expr
    bins: Bins | None
    group: bool  # count every value (exact distinct, top values)


def _plan_column(column: _Column, stats: Mapping[str, Any], rows: int) -> _ColumnPlan:
    key = column.key
    count = rows - int(stats[f"{key}.nulls"])
    distinct = _distinct(column, stats, rows)[0]
    # Few distinct values (or an estimate of few): count every value. Booleans' two counts are the first pass's.
    exact = f"{key}.distinct" in stats
    group = (
        column.countable
        and count > 0
        and distinct is not None
        and distinct <= TOP_MAX_DISTINCT
        and (distinct < count or not exact)
    )
    ranged = _ranged(column, stats, rows)
    return _ColumnPlan(
        values=_summarised_count(column, stats, rows),
        summarised=_summarised(column, stats),
        bins=_bins(column, stats[f"{key}.min"], stats[f"{key}.max"]) if ranged else None,
        group=group,
    )


def _bins(column: _Column, low: Any, high: Any) -> Bins:
    return Bins.spanning(low, high, whole=column.whole, granule=column.granule(low, high))


def _distinct(column: _Column, stats: Mapping[str, Any], rows: int) -> tuple[int | None, bool]:
    """The distinct values after the first pass, and whether that is an estimate."""
    key = column.key
    if f"{key}.distinct" in stats:
        return int(stats[f"{key}.distinct"]), False
    count = rows - int(stats[f"{key}.nulls"])
    if f"{key}.hashed" not in stats:
        return None, False
    if count == 0:
        return 0, False
    hashed = int(stats[f"{key}.hashed"])
    estimate = round(hashed / _hash_fraction(rows))
    # The distinct hashes kept and the sample's distinct values are floors, the non-null count a ceiling.
    floor = max(hashed, int(stats.get(f"{key}.sample_distinct") or 0))
    return min(max(estimate, floor), count), True


def _second_pass(frame: pl.LazyFrame, columns: Sequence[_Column], plans: Mapping[str, _ColumnPlan]) -> dict[str, Any]:
    """Histograms (how many bin numbers fall below each bin) and value counts, in one go."""
    import polars as pl

    found: dict[str, Any] = {}
    bin_numbers = []
    exprs = []
    for c in columns:
        plan = plans[c.key]
        if plan.bins is not None:
            bin_numbers.append(plan.bins.index(plan.summarised).alias(f"{c.key}.bin"))
            exprs += plan.bins.exprs(f"{c.key}.bin", f"{c.key}.lt")
    grouped = [c for c in columns if plans[c.key].group]
    queries = [frame.select(bin_numbers).select(exprs)] if exprs else []
    queries += [frame.group_by(c.key).len("count").filter(pl.col(c.key).is_not_null()) for c in grouped]
    results = pl.collect_all(queries, engine="streaming") if queries else []
    if exprs:
        found.update(results[0].row(0, named=True))
    for c, counted in zip(grouped, results[len(results) - len(grouped) :], strict=True):
        shown = counted.filter(pl.col(c.key).is_not_nan()) if c.is_float else counted
        shown = shown.sort(["count", c.key], descending=[True, False]).head(TOP_K)
        found[f"{c.key}.groups"] = (counted.height, shown.rows())
    return found


def _assemble(
    column: _Column, stats: Mapping[str, Any], plan: _ColumnPlan, rows: int, *, sample_is_all: bool
) -> dict[str, Any]:
    import polars as pl

    key = column.key
    nulls = int(stats[f"{key}.nulls"])
    count = rows - nulls
    distinct, approximate = _distinct(column, stats, rows)
    top = None
    if plan.group:
        distinct, shown = stats[f"{key}.groups"]
        approximate = False
        if distinct <= TOP_MAX_DISTINCT and distinct < count and column.dtype != pl.Binary:
            top = [{"value": _jsonable(value), "count": int(n)} for value, n in shown]
    elif column.kind == "boolean" and count:
        trues = round(stats[f"{key}.mean"] * count)
        counted = sorted([(trues, True), (count - trues, False)], key=lambda item: (-item[0], item[1]))
        top = [{"value": value, "count": n} for n, value in counted if n]
        distinct = len(top)
    out: dict[str, Any] = {
        "position": column.position,
        "type": column.type,
        "kind": column.kind,
        "count": count,
        "nulls": nulls,
        "null_fraction": nulls / rows if rows else 0.0,
        "distinct": distinct,
        "distinct_approximate": approximate,
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "quantiles": None,
        "quantiles_approximate": False,
        "top": top,
        "histogram": None,
    }
    if column.kind == "numeric":
        out.update({s: _number(stats.get(f"{key}.{s}")) for s in ("min", "max", "mean", "std")})
    elif column.kind == "temporal":
        low, high, mean = _iso(column, [stats.get(f"{key}.{s}") for s in ("min", "max", "mean")])
        out.update(min=low, max=high, mean=mean)
    elif column.kind == "boolean":
        out["mean"] = _number(stats.get(f"{key}.mean"))
    if plan.bins is not None:
        found = [stats[f"{key}.{name}"] for name in QUANTILES]
        values: list[Any] = _iso(column, found) if column.kind == "temporal" else [_number(v) for v in found]
        out["quantiles"] = dict(zip(QUANTILES, values, strict=True))
        out["quantiles_approximate"] = not sample_is_all
        edges: list[Any] = _iso(column, plan.bins.edges) if column.kind == "temporal" else plan.bins.edges
        out["histogram"] = {"edges": edges, "counts": plan.bins.counts(stats, f"{key}.lt", plan.values)}
    if column.is_float:
        out["nan"] = int(stats.get(f"{key}.nan") or 0)
        out["infinite"] = int(stats.get(f"{key}.infinite") or 0)
    if f"{key}.len_min" in stats:
        out["length_bytes"] = {s: _number(stats[f"{key}.len_{s}"]) for s in ("min", "max", "mean")}
    return out


def _number(value: Any) -> int | float | None:
    """A JSON number, or ``None`` for a missing, NaN or infinite value (integers beyond 64 bits as floats, which
    every JSON reader takes)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int) and -(2**63) <= value < 2**64:
        return value
    number = float(value)
    return number if math.isfinite(number) else None


def _iso(column: _Column, values: Sequence[Any]) -> list[str | None]:
    """Physical integers (days, or time units since the epoch) of a date or datetime column as ISO strings."""
    import polars as pl

    ints = pl.Series([None if v is None or _is_non_finite(v) else round(v) for v in values], dtype=pl.Int64)
    as_type = ints.cast(pl.Int32).cast(pl.Date) if column.dtype == pl.Date else ints.cast(column.dtype)
    return [None if v is None else v.isoformat() for v in as_type.to_list()]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, date | datetime | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return _number(float(value))
    return str(value)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Orders values of one column (ties among top values), whatever their type."""
    if isinstance(value, int | float | bool | str | date | datetime | time | timedelta | Decimal):
        return (0, value)
    return (1, str(value))


# -- the HTML report -----------------------------------------------------------------------------------------------


def _ordered(profile: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """A profile's columns in the file's order (a JSON store may have reordered the keys)."""
    columns: Mapping[str, dict[str, Any]] = profile.get("columns") or {}
    return sorted(columns.items(), key=lambda item: item[1].get("position", 0))


def render_profile_html(ref: str, profile: Mapping[str, Any]) -> str:
    """A self-contained HTML report of a profile: an overview table, the null fraction of every column, and per
    column its statistics, a histogram (numbers, dates) and a bar chart of its top values.

    Plotly draws the charts; its JavaScript is embedded once, so the file works offline (about 4.5 MB).
    """
    columns = _ordered(profile)
    figures: list[tuple[str, dict[str, Any]]] = []
    body = [
        f"<h1>Profile of {_h(ref)}</h1>",
        f"<p class=summary>{format_statistic(profile.get('rows'))} rows · {len(columns)} columns</p>",
        "<h2>Overview</h2>",
        _overview_table(columns),
    ]
    if columns:
        body.append(_chart(figures, "nulls", _null_figure(columns)))
    body.append("<h2>Columns</h2>")
    for name, column in columns:
        body.append(f"<section class=column id=column-{int(column.get('position', 0))}>")
        body.append(f"<h3>{_h(name)} <small>{_h(column.get('type'))}</small></h3>")
        body.append(_stats_table(column))
        histogram = column.get("histogram")
        if histogram and histogram.get("counts"):
            body.append(_chart(figures, "histogram", _histogram_figure(name, column, histogram)))
        if column.get("top"):
            body.append(_chart(figures, "top-values", _top_figure(name, column)))
        body.append("</section>")
    return _page(ref, "\n".join(body), figures)


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{margin-bottom:.2rem}h3 small{color:#777;font-weight:normal}.summary{color:#555}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}section.column{margin-bottom:2.5rem}
.chart{min-height:320px}
"""


def _page(ref: str, body: str, figures: Sequence[tuple[str, dict[str, Any]]]) -> str:
    import plotly.io as pio

    parts = body.split("\x00")
    html_parts = [parts[0]]
    for index, (_, figure) in enumerate(figures):
        chart = pio.to_html(
            figure,
            full_html=False,
            include_plotlyjs=index == 0,
            validate=False,
            config={"displaylogo": False, "responsive": True},
            default_height="320px",
            div_id=f"chart-{index}",
        )
        html_parts += [chart, parts[index + 1]]
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        f"<title>Profile of {_h(ref)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "".join(html_parts)
        + "\n</body>\n</html>\n"
    )


def _chart(figures: list[tuple[str, dict[str, Any]]], kind: str, figure: dict[str, Any]) -> str:
    """A placeholder for a chart (``\\x00`` marks where :func:`_page` puts the Plotly markup)."""
    figures.append((kind, figure))
    return f"<div class='chart {kind}'>\x00</div>"


def _layout(title: str, *, xaxis: dict[str, Any] | None = None, yaxis: dict[str, Any] | None = None) -> dict[str, Any]:
    grid = {"gridcolor": "#eee", "zerolinecolor": "#ccc", "automargin": True}
    return {
        "title": {"text": title},
        "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        "plot_bgcolor": "white",
        "bargap": 0.02,
        "xaxis": {**grid, **(xaxis or {})},
        "yaxis": {**grid, **(yaxis or {})},
    }


def _null_figure(columns: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    names = [name for name, _ in columns]
    fractions = [c.get("null_fraction") or 0.0 for _, c in columns]
    return {
        "data": [{"type": "bar", "x": names, "y": fractions, "marker": {"color": "#d62728"}, "name": "nulls"}],
        "layout": _layout("Null fraction by column", yaxis={"tickformat": ".0%", "rangemode": "tozero"}),
    }


def _histogram_figure(name: str, column: Mapping[str, Any], histogram: Mapping[str, Any]) -> dict[str, Any]:
    edges, counts = histogram["edges"], histogram["counts"]
    bar: dict[str, Any]
    if column.get("kind") == "temporal":
        bar = {"x": [f"{a} – {b}" for a, b in _pairs(edges)]}
    elif len(edges) == 2 and edges[0] == edges[1]:
        bar = {"x": [edges[0]]}
    else:
        bar = {
            "x": [(a + b) / 2 for a, b in _pairs(edges)],
            "width": [b - a for a, b in _pairs(edges)],
            "customdata": [[a, b] for a, b in _pairs(edges)],
            "hovertemplate": "[%{customdata[0]}, %{customdata[1]}): %{y}<extra></extra>",
        }
    return {
        "data": [{"type": "bar", "y": counts, "name": name, "marker": {"color": "#1f77b4"}, **bar}],
        "layout": _layout(f"{name}: histogram", yaxis={"title": {"text": "rows"}}),
    }


def _top_figure(name: str, column: Mapping[str, Any]) -> dict[str, Any]:
    top = column["top"]
    labels = [_label(item["value"]) for item in top]
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": [item["count"] for item in reversed(top)],
                "y": list(reversed(labels)),
                "marker": {"color": "#2ca02c"},
                "name": name,
            }
        ],
        "layout": _layout(f"{name}: most frequent values", yaxis={"type": "category", "automargin": True}),
    }


def _overview_table(columns: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("column", "type", "nulls", "distinct", "min", "max", "mean"))
    rows = []
    for name, c in columns:
        distinct = ("≈" if c.get("distinct_approximate") else "") + format_statistic(c.get("distinct"))
        cells = [
            f"<td><a href='#column-{int(c.get('position', 0))}'>{_h(name)}</a></td>",
            f"<td>{_h(c.get('type'))}</td>",
            f"<td class=n>{format_percent(c.get('null_fraction'))}</td>",
            f"<td class=n>{_h(distinct)}</td>",
            f"<td class=n>{_h(format_statistic(c.get('min')))}</td>",
            f"<td class=n>{_h(format_statistic(c.get('max')))}</td>",
            f"<td class=n>{_h(format_statistic(c.get('mean')))}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class=overview><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _stats_table(column: Mapping[str, Any]) -> str:
    items: list[tuple[str, Any]] = [
        ("count", column.get("count")),
        ("nulls", f"{format_statistic(column.get('nulls'))} ({format_percent(column.get('null_fraction'))})"),
        ("distinct", ("≈" if column.get("distinct_approximate") else "") + format_statistic(column.get("distinct"))),
    ]
    items += [(s, column.get(s)) for s in ("min", "max", "mean", "std") if column.get(s) is not None]
    quantiles = column.get("quantiles") or {}
    approximate = " (sampled)" if column.get("quantiles_approximate") else ""
    items += [(f"{name}{approximate}", value) for name, value in quantiles.items()]
    if column.get("nan") or column.get("infinite"):
        items += [("NaN", column.get("nan")), ("infinite", column.get("infinite"))]
    lengths = column.get("length_bytes")
    if lengths:
        items.append(
            (
                "length (bytes)",
                f"{format_statistic(lengths['min'])}–{format_statistic(lengths['max'])}, "
                f"mean {format_statistic(lengths['mean'])}",
            )
        )
    rows = "".join(f"<tr><th>{_h(k)}</th><td class=n>{_h(format_statistic(v))}</td></tr>" for k, v in items)
    return f"<table class=stats>{rows}</table>"


def _h(value: Any) -> str:
    import html

    return html.escape("" if value is None else str(value))


def format_statistic(value: Any) -> str:
    """A statistic for people: thousands separators, 4 significant digits, nothing for ``None``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    return str(value)


def format_percent(value: Any) -> str:
    return "" if value is None else f"{100 * float(value):.1f}%"


def _label(value: Any) -> str:
    return "(empty)" if value == "" else format_statistic(value)


def _pairs(values: Sequence[Any]) -> list[tuple[Any, Any]]:
    return list(itertools.pairwise(values))


# -- comparing two profiles ----------------------------------------------------------------------------------------

#: Proportions below this count as this in the PSI, so an empty bin does not make it infinite.
PSI_FLOOR: Final = 1e-4


def shared_histograms(
    paths_a: Sequence[Path | str],
    profile_a: Mapping[str, Any],
    paths_b: Sequence[Path | str],
    profile_b: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Histograms of the numeric columns two versions share, on the same edges (from the lower min to the higher
    max), counted in each version's files: ``{column: {"edges", "a", "b"}}``. With the same edges, the two
    distributions can be compared honestly (:func:`diff_profiles` takes them for its PSI and JS distance).
    Columns whose profiled histograms already share their edges are left to those."""
    columns_a, columns_b = profile_a.get("columns") or {}, profile_b.get("columns") or {}
    plans: dict[str, tuple[Bins, int, int]] = {}
    for name, a in columns_a.items():
        b = columns_b.get(name)
        if b is None or a.get("kind") != "numeric" or b.get("kind") != "numeric" or _same_edges(a, b):
            continue
        lows = [v for v in (a.get("min"), b.get("min")) if v is not None]
        highs = [v for v in (a.get("max"), b.get("max")) if v is not None]
        if not lows or not highs:
            continue
        whole = all(isinstance(v, int) for v in (*lows, *highs)) and _integer_type(a) and _integer_type(b)
        bins = Bins.spanning(min(lows), max(highs), whole=whole)
        plans[name] = (bins, int(a.get("position", 0)), int(b.get("position", 0)))
    if not plans:
        return {}
    counts_a = _count_bins(paths_a, {name: (bins, pos) for name, (bins, pos, _) in plans.items()})
    counts_b = _count_bins(paths_b, {name: (bins, pos) for name, (bins, _, pos) in plans.items()})
    return {
        name: {"edges": bins.edges, "a": counts_a[name], "b": counts_b[name]} for name, (bins, _, _) in plans.items()
    }


def _same_edges(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two profiled columns' histograms already share their edges (nothing to count again)."""
    hist_a, hist_b = a.get("histogram"), b.get("histogram")
    return bool(hist_a and hist_b and hist_a.get("edges") == hist_b.get("edges"))


def _integer_type(column: Mapping[str, Any]) -> bool:
    return str(column.get("type", "")).startswith(("int", "uint"))


def _count_bins(paths: Sequence[Path | str], plans: Mapping[str, tuple[Bins, int]]) -> dict[str, list[int]]:
    import polars as pl

    frame = pl.scan_parquet([Path(p) for p in paths])
    numbers, exprs = [], []
    for i, (bins, position) in enumerate(plans.values()):
        values = pl.nth(position)
        finite = pl.when(values.cast(pl.Float64).is_finite()).then(values)
        numbers.append(bins.index(finite).alias(f"b{i}"))
        exprs += [*bins.exprs(f"b{i}", f"b{i}.lt"), pl.col(f"b{i}").count().alias(f"b{i}.n")]
    found = frame.select(numbers).select(exprs).collect(engine="streaming").row(0, named=True)
    return {
        name: bins.counts(found, f"b{i}.lt", int(found[f"b{i}.n"])) for i, (name, (bins, _)) in enumerate(plans.items())
    }


def diff_profiles(
    ref_a: str,
    profile_a: Mapping[str, Any],
    ref_b: str,
    profile_b: Mapping[str, Any],
    *,
    histograms: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """What changed from version ``a`` to version ``b``, from their profiles::

        {"a": ref_a, "b": ref_b,
         "rows": {"a", "b", "change", "relative"},
         "schema": {"added": [{"name", "type"}], "removed": [...], "type_changed": [{"name", "a", "b"}]},
         "columns": {name: {"type_a", "type_b", "score", "null_fraction": {"a", "b", "change"}, "distinct": ...,
                            "mean": ..., "std", "min", "max", "mean_shift_std", "psi", "js_distance",
                            "top_added", "top_removed"}},
         "shifts": [{"column", "score", "reasons"}, ...]}   # the columns that moved, most first

    Statistics missing on either side are left out. ``psi`` and ``js_distance`` compare the distributions of a
    numeric column when both histograms have the same edges: the ``histograms`` given (see
    :func:`shared_histograms`), or the profiles' own when their edges match; otherwise they are left out rather
    than guessed from bins that do not line up. For columns whose top values hold every value (at most
    :data:`TOP_K` distinct), the JS distance compares those counts. ``score`` is a 0–1 ranking key (the largest of
    the change in null fraction, the JS distance, the mean shift in standard deviations capped at 1, and the
    relative change in distinct values); a type change scores 1. It orders ``shifts``; it is not a test.
    """
    columns_a: Mapping[str, Any] = profile_a.get("columns") or {}
    columns_b: Mapping[str, Any] = profile_b.get("columns") or {}
    rows_a, rows_b = int(profile_a.get("rows") or 0), int(profile_b.get("rows") or 0)
    added = [{"name": n, "type": c.get("type")} for n, c in _ordered(profile_b) if n not in columns_a]
    removed = [{"name": n, "type": c.get("type")} for n, c in _ordered(profile_a) if n not in columns_b]
    common = [n for n, _ in _ordered(profile_b) if n in columns_a]
    type_changed = [
        {"name": n, "a": columns_a[n].get("type"), "b": columns_b[n].get("type")}
        for n in common
        if columns_a[n].get("type") != columns_b[n].get("type")
    ]
    columns = {name: _diff_column(columns_a[name], columns_b[name], (histograms or {}).get(name)) for name in common}
    shifts = sorted(
        ({"column": name, "score": c["score"], "reasons": c.pop("reasons")} for name, c in columns.items()),
        key=lambda item: -item["score"],
    )
    return {
        "a": ref_a,
        "b": ref_b,
        "rows": {
            "a": rows_a,
            "b": rows_b,
            "change": rows_b - rows_a,
            "relative": (rows_b - rows_a) / rows_a if rows_a else None,
        },
        "schema": {"added": added, "removed": removed, "type_changed": type_changed},
        "columns": columns,
        "shifts": [s for s in shifts if s["score"] > 0],
    }


def _diff_column(a: Mapping[str, Any], b: Mapping[str, Any], shared: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"type_a": a.get("type"), "type_b": b.get("type")}
    for stat in ("null_fraction", "distinct", "mean", "std", "min", "max"):
        va, vb = a.get(stat), b.get(stat)
        if va is None or vb is None:
            continue
        out[stat] = {"a": va, "b": vb, **({"change": vb - va} if _is_number(va) and _is_number(vb) else {})}
    mean, std_a = out.get("mean"), a.get("std")
    if mean and "change" in mean and a.get("kind") == "numeric" and _is_number(std_a) and std_a > 0:
        out["mean_shift_std"] = mean["change"] / std_a
    distributions = _distributions(a, b, shared)
    if distributions is not None:
        out["psi"], out["js_distance"] = psi(*distributions), js_distance(*distributions)
    top_a, top_b = a.get("top") or [], b.get("top") or []
    if top_a and top_b:
        values_a, values_b = [t["value"] for t in top_a], [t["value"] for t in top_b]
        out["top_added"] = [v for v in values_b if v not in values_a]
        out["top_removed"] = [v for v in values_a if v not in values_b]
    scored = _scores(a, b, out)
    out["score"] = max((score for score, _ in scored), default=0.0)
    out["reasons"] = [reason for _, reason in scored]
    return out


def _scores(a: Mapping[str, Any], b: Mapping[str, Any], out: Mapping[str, Any]) -> list[tuple[float, str]]:
    """Each change worth a mention, with its 0–1 score."""
    scored: list[tuple[float, str]] = []
    if a.get("type") != b.get("type"):
        scored.append((1.0, f"type {a.get('type')} → {b.get('type')}"))
    nulls = out.get("null_fraction")
    if nulls and nulls["change"]:
        scored.append(
            (min(1.0, abs(nulls["change"])), f"nulls {format_percent(nulls['a'])} → {format_percent(nulls['b'])}")
        )
    distinct = out.get("distinct")
    if distinct and distinct["change"]:
        relative = abs(distinct["change"]) / max(distinct["a"], distinct["b"])
        # Two estimates of the same data differ by a few per cent: that is no shift.
        if relative > 0.05 or not (a.get("distinct_approximate") or b.get("distinct_approximate")):
            scored.append((relative, f"distinct {format_statistic(distinct['a'])} → {format_statistic(distinct['b'])}"))
    mean, shift = out.get("mean"), out.get("mean_shift_std")
    if mean and shift:
        scored.append(
            (
                min(1.0, abs(shift)),
                f"mean {format_statistic(mean['a'])} → {format_statistic(mean['b'])} ({shift:+.2f} std)",
            )
        )
    elif mean and a.get("kind") == "boolean" and mean.get("change"):
        scored.append(
            (min(1.0, abs(mean["change"])), f"true {format_percent(mean['a'])} → {format_percent(mean['b'])}")
        )
    if "js_distance" in out and out["js_distance"] > 0:
        reason = f"distribution: JS distance {out['js_distance']:.3f}, PSI {out['psi']:.3f}"
        scored.append((out["js_distance"], reason))
    return scored


def _distributions(
    a: Mapping[str, Any], b: Mapping[str, Any], shared: Mapping[str, Any] | None
) -> tuple[list[int], list[int]] | None:
    """Two count vectors over the same bins, when they honestly exist."""
    if shared is not None:
        return list(shared["a"]), list(shared["b"])
    hist_a, hist_b = a.get("histogram"), b.get("histogram")
    if hist_a and hist_b and hist_a.get("edges") == hist_b.get("edges"):
        return list(hist_a["counts"]), list(hist_b["counts"])
    top_a: list[dict[str, Any]] = a.get("top") or []
    top_b: list[dict[str, Any]] = b.get("top") or []
    complete = top_a and top_b and all(sum(t["count"] for t in c["top"]) == c.get("count") for c in (a, b))
    if complete:
        values = list(dict.fromkeys([t["value"] for t in top_a] + [t["value"] for t in top_b]))
        counts_a = {t["value"]: t["count"] for t in top_a}
        counts_b = {t["value"]: t["count"] for t in top_b}
        return [counts_a.get(v, 0) for v in values], [counts_b.get(v, 0) for v in values]
    return None


def psi(counts_a: Sequence[int], counts_b: Sequence[int]) -> float:
    """The population stability index of ``b`` against ``a`` over the same bins (proportions floored at
    :data:`PSI_FLOOR`): under 0.1 little change, over 0.25 a large one, by the usual rule of thumb."""
    p, q = _proportions(counts_a), _proportions(counts_b)
    if p is None or q is None:
        return 0.0
    total = 0.0
    for share_a, share_b in zip(p, q, strict=True):
        floored_a, floored_b = max(share_a, PSI_FLOOR), max(share_b, PSI_FLOOR)
        total += (floored_b - floored_a) * math.log(floored_b / floored_a)
    return total


def js_distance(counts_a: Sequence[int], counts_b: Sequence[int]) -> float:
    """The Jensen–Shannon distance (base 2, so from 0 for the same distribution to 1 for disjoint ones)."""
    p, q = _proportions(counts_a), _proportions(counts_b)
    if p is None or q is None:
        return 0.0
    divergence = 0.0
    for pa, pb in zip(p, q, strict=True):
        m = (pa + pb) / 2
        if pa > 0:
            divergence += 0.5 * pa * math.log2(pa / m)
        if pb > 0:
            divergence += 0.5 * pb * math.log2(pb / m)
    return math.sqrt(max(0.0, min(1.0, divergence)))


def _proportions(counts: Sequence[int]) -> list[float] | None:
    total = sum(counts)
    return [c / total for c in counts] if total > 0 else None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)
