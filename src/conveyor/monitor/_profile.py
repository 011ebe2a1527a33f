"""Reference profiles: every column's drift sketch computed once, out of core, and stored (with a model version).

A profile holds, per column, what a drift metric compares the current data with (``NumericSketch`` or
``CategoricalSketch``, the same sketches :func:`conveyor.monitor.compute_drift` builds from a whole reference
column), so a monitor compares each window with it without reading the training data again.

It is computed from Parquet (or an Arrow table) one column and one batch at a time, so memory stays flat
whatever the row count: a numeric column takes two passes. The first counts values, nulls and unreadable ones,
finds the minimum and maximum and keeps a uniform sample of ``exact_limit`` values (the bottom-k of random keys:
every value when there are at most that many, so exact metrics stay exact); the second counts the values and
sums them exactly in the cells between the sample's quantiles. The stored cumulative shares and sums at the
edges are therefore exact; only where the edges fall comes from the sample. A categorical column is counted in one
pass (the :data:`TOP_K` most frequent categories kept one by one, the rest together).

Stored as NumPy's ``.npz`` (arrays only, read with ``allow_pickle=False``) plus a JSON header.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson

from conveyor.errors import BadInput
from conveyor.monitor._columns import (
    CATEGORICAL,
    FEW_DISTINCT,
    NUMERIC,
    _categories,
    _numbers,
    _value_counts,
    kind_of_type,
)
from conveyor.monitor._metrics import (
    DEFAULT_EXACT_LIMIT,
    OTHER,
    SKETCH_BINS,
    TOP_K,
    CategoricalSketch,
    NumericSketch,
    Sketch,
)
from conveyor.monitor._table import Table

__all__ = ["BATCH_ROWS", "Profile", "build_profile"]

BATCH_ROWS = 1_000_000
"""Rows read at a time (one column): ~8 MB of float64."""
_FORMAT = 1


@dataclass(frozen=True)
class Profile:
    """A reference data set's drift sketches by column, with where they came from.

    Attributes:
        source: what was profiled (``churn:3``, a path).
        rows: rows profiled.
        sketches: per compared column, its sketch.
        skipped: per column that is not compared (its type), why.
        notes: per column, what happened on the way (values not readable as numbers...).
        seconds: how long computing it took.
        created_at: when (UTC, ISO 8601).
    """

    source: str
    rows: int
    sketches: dict[str, Sketch]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    seconds: float = 0.0
    created_at: str = ""

    @property
    def columns(self) -> list[str]:
        return [*self.sketches, *self.skipped]

    @property
    def label(self) -> str:
        """How a drift report names this reference."""
        return f"profile of {self.source}"

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly description (no arrays): per column its kind, values, nulls and a few statistics."""
        columns = []
        for name, sketch in self.sketches.items():
            entry: dict[str, Any] = {"column": name, "kind": sketch.kind, "count": sketch.count, "nulls": sketch.nulls}
            if isinstance(sketch, NumericSketch):
                entry.update(
                    minimum=sketch.minimum, maximum=sketch.maximum, mean=sketch.mean, std=sketch.std,
                    exact_sample=sketch.sample is not None,
                )  # fmt: skip
            else:
                entry["categories"] = len([c for c in sketch.counts if c != OTHER])
            if self.notes.get(name):
                entry["notes"] = list(self.notes[name])
            columns.append(entry)
        columns += [{"column": n, "kind": None, "skipped": why} for n, why in self.skipped.items()]
        return {
            "source": self.source,
            "rows": self.rows,
            "columns": columns,
            "seconds": self.seconds,
            "created_at": self.created_at,
        }

    # -- storage -----------------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The profile as ``.npz`` bytes: numeric arrays by column index, the rest in a JSON header."""
        arrays: dict[str, np.ndarray[Any, Any]] = {}
        columns: list[dict[str, Any]] = []
        for i, (name, sketch) in enumerate(self.sketches.items()):
            if isinstance(sketch, NumericSketch):
                arrays[f"{i}_edges"], arrays[f"{i}_cdf"], arrays[f"{i}_sums"] = sketch.edges, sketch.cdf, sketch.sums
                if sketch.sample is not None:
                    arrays[f"{i}_sample"] = sketch.sample
                columns.append(
                    {"name": name, "kind": NUMERIC, "count": sketch.count, "nulls": sketch.nulls,
                     "mean": sketch.mean, "std": sketch.std}
                )  # fmt: skip
            else:
                columns.append(
                    {"name": name, "kind": CATEGORICAL, "count": sketch.count, "nulls": sketch.nulls,
                     "counts": sketch.counts}
                )  # fmt: skip
        header = {
            "format": _FORMAT,
            "source": self.source,
            "rows": self.rows,
            "columns": columns,
            "skipped": self.skipped,
            "notes": {k: list(v) for k, v in self.notes.items()},
            "seconds": self.seconds,
            "created_at": self.created_at,
        }
        arrays["header"] = np.frombuffer(orjson.dumps(header), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "the profile") -> Profile:
        """Read what :meth:`to_bytes` wrote (never unpickles).

        Raises:
            BadInput: the bytes are not a profile (or one of a newer format).
        """
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
            header = orjson.loads(arrays.pop("header").tobytes())
        except (ValueError, OSError, KeyError, orjson.JSONDecodeError, zipfile.BadZipFile) as exc:
            raise BadInput(f"{what} is not a Conveyor reference profile: {exc}") from exc
        if header.get("format") != _FORMAT:
            raise BadInput(f"{what} has profile format {header.get('format')!r}; this Conveyor reads {_FORMAT}.")
        sketches: dict[str, Sketch] = {}
        for i, column in enumerate(header["columns"]):
            if column["kind"] == NUMERIC:
                sketches[column["name"]] = NumericSketch(
                    count=int(column["count"]), nulls=int(column["nulls"]), mean=float(column["mean"]),
                    std=float(column["std"]), edges=arrays[f"{i}_edges"], cdf=arrays[f"{i}_cdf"],
                    sums=arrays[f"{i}_sums"], sample=arrays.get(f"{i}_sample"),
                )  # fmt: skip
            else:
                counts = {str(k): int(v) for k, v in column["counts"].items()}
                sketches[column["name"]] = CategoricalSketch(int(column["count"]), int(column["nulls"]), counts)
        return cls(
            source=str(header["source"]),
            rows=int(header["rows"]),
            sketches=sketches,
            skipped=dict(header.get("skipped", {})),
            notes={k: tuple(v) for k, v in header.get("notes", {}).items()},
            seconds=float(header.get("seconds", 0.0)),
            created_at=str(header.get("created_at", "")),
        )


# -- building ----------------------------------------------------------------------------------------------


def build_profile(
    table: Table,
    *,
    columns: Sequence[str] | None = None,
    exact_limit: int = DEFAULT_EXACT_LIMIT,
    bins: int = SKETCH_BINS,
    batch_rows: int = BATCH_ROWS,
    seed: int = 0,
    source: str | None = None,
) -> Profile:
    """Profile a table column by column, batch by batch: memory stays flat whatever its row count.

    Raises:
        BadInput: an unknown column.
    """
    started = time.perf_counter()
    names = list(table.columns) if columns is None else list(columns)
    unknown = [n for n in names if n not in table.columns]
    if unknown:
        raise BadInput(
            f"No column {unknown[0]!r} to profile in {table.label}; its columns: {', '.join(table.columns)}.",
            column=unknown[0],
        )
    sketches: dict[str, Sketch] = {}
    skipped: dict[str, str] = {}
    notes: dict[str, tuple[str, ...]] = {}
    rng = np.random.default_rng(seed)
    for name in names:
        dtype = table.schema.field(name).type
        kind = kind_of_type(dtype)
        if kind is None:
            skipped[name] = f"{dtype} is not compared for drift"
            continue
        if kind == NUMERIC:
            sketch, found = _numeric(table, name, exact_limit, bins, batch_rows, rng)
        else:
            sketch, found = _categorical(table, name, batch_rows)
        if sketch is None:
            skipped[name] = f"every value is null ({table.rows:,} rows); nothing to compare with"
        else:
            sketches[name] = sketch
        if found:
            notes[name] = tuple(found)
    return Profile(
        source=source or table.label,
        rows=table.rows,
        sketches=sketches,
        skipped=skipped,
        notes=notes,
        seconds=round(time.perf_counter() - started, 4),
        created_at=datetime.now(UTC).isoformat(),
    )


def _categorical(data: Table, name: str, batch_rows: int) -> tuple[Sketch | None, list[str]]:
    counts: Counter[str] = Counter()
    nulls = 0
    for batch in data.batches(name, batch_rows):
        nulls += batch.null_count
        counts.update(_categories(batch))
        if len(counts) > 20 * TOP_K:  # bounded memory: the long tail is only ever counted together
            kept = counts.most_common(TOP_K)
            rest = sum(counts.values()) - sum(c for _, c in kept)
            counts = Counter(dict(kept))
            counts[OTHER] += rest
    return _categorical_sketch(counts, nulls), []


def _categorical_sketch(counts: Counter[str], nulls: int) -> CategoricalSketch | None:
    total = sum(counts.values())
    if total == 0:
        return None
    ranked = sorted(((k, v) for k, v in counts.items() if k != OTHER), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:TOP_K])
    rest = total - sum(kept.values())
    if rest:
        kept[OTHER] = rest
    return CategoricalSketch(total, nulls, kept)


def _numeric(
    data: Table, name: str, exact_limit: int, bins: int, batch_rows: int, rng: np.random.Generator
) -> tuple[Sketch | None, list[str]]:
    # Pass 1: counts, extremes, moments, a uniform sample (bottom-k random keys), a few distinct values.
    count = nulls = dropped = 0
    minimum, maximum = np.inf, -np.inf
    mean = m2 = 0.0
    keep = max(exact_limit, bins * 20)
    sample = np.empty(0)
    keys = np.empty(0)
    distinct: set[float] | None = set()
    found: list[str] = []
    for batch in data.batches(name, batch_rows):
        values, unreadable, batch_notes = _numbers(batch)
        dropped += unreadable
        nulls += len(batch) - unreadable - int(values.size)
        found.extend(n for n in batch_notes if n not in found)
        if not values.size:
            continue
        n = int(values.size)
        minimum, maximum = min(minimum, float(values.min())), max(maximum, float(values.max()))
        batch_mean = float(values.mean())
        delta = batch_mean - mean
        total = count + n
        mean += delta * n / total  # Chan et al.'s parallel update of the mean and the sum of squares
        m2 += float(((values - batch_mean) ** 2).sum()) + delta * delta * count * n / total
        count = total
        if distinct is not None:
            uniques = np.unique(values)
            distinct = distinct | set(uniques.tolist()) if uniques.size <= FEW_DISTINCT else None
            if distinct is not None and len(distinct) > FEW_DISTINCT:
                distinct = None
        batch_keys = rng.random(n)
        sample, keys = np.concatenate((sample, values)), np.concatenate((keys, batch_keys))
        if sample.size > keep:
            chosen = np.argpartition(keys, keep - 1)[:keep]
            sample, keys = sample[chosen], keys[chosen]
    if count == 0:
        return None, found
    if distinct is not None:  # a handful of distinct numbers: compared as categories (as compute_drift does)
        counts: Counter[str] = Counter()
        for batch in data.batches(name, batch_rows):
            values, _, _ = _numbers(batch)
            counts.update(_value_counts(values))
        return _categorical_sketch(counts, nulls), found
    sample.sort()
    positions = np.unique(np.round(np.linspace(0, sample.size - 1, min(bins, sample.size - 1) + 1)).astype(np.int64))
    edges = np.unique(np.concatenate(([minimum], sample[positions], [maximum])))
    # Pass 2: exact counts and sums in the cells (edges[k-1], edges[k]] (cell 0: values equal to the minimum).
    cell_counts = np.zeros(edges.size)
    cell_sums = np.zeros(edges.size)
    for batch in data.batches(name, batch_rows):
        values, _, _ = _numbers(batch)
        if values.size:
            cells = np.searchsorted(edges, values, side="left")
            cell_counts += np.bincount(cells, minlength=edges.size)
            cell_sums += np.bincount(cells, weights=values, minlength=edges.size)
    return (
        NumericSketch(
            count=count,
            nulls=nulls,
            mean=float(cell_sums.sum() / count),
            std=float(np.sqrt(m2 / count)),
            edges=edges,
            cdf=np.cumsum(cell_counts) / count,
            sums=cell_sums,
            sample=sample if count <= exact_limit else None,
        ),
        found,
    )
