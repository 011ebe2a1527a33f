"""One column of one side, ready for a drift metric: its kind, and its values as sorted numbers or category counts.

A column is *numeric* when its Arrow type is a number (or a date/time, compared as its integer ticks) with more
than :data:`FEW_DISTINCT` distinct values in the reference, else *categorical* (strings, booleans, dictionaries and
numbers with a handful of values, as Evidently does). The current side is always read as the reference's kind, so
a type that changed between the sides is compared where it can be and its unreadable values counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["CATEGORICAL", "FEW_DISTINCT", "NUMERIC", "Column", "Kind", "kind_of_type", "prepare_column"]

Kind = Literal["numeric", "categorical"]
NUMERIC: Kind = "numeric"
CATEGORICAL: Kind = "categorical"
FEW_DISTINCT = 5
"""A numeric reference column with at most this many distinct values is compared as categories."""


@dataclass(frozen=True)
class Column:
    """One side of one column, as drift metrics read it.

    Attributes:
        name: the column's name.
        kind: ``numeric`` or ``categorical``.
        rows: rows on this side, nulls included.
        nulls: null (and NaN) values, not compared.
        values: numeric columns: the finite values, sorted ascending (float64).
        counts: categorical columns: how many times each category (as text) occurs.
        dropped: values that could not be read as this kind (text in a numeric column) or were infinite.
        notes: what happened on the way (mixed types, values dropped), for the report.
    """

    name: str
    kind: Kind
    rows: int
    nulls: int
    values: np.ndarray[Any, np.dtype[np.float64]] | None = None
    counts: dict[str, int] | None = None
    dropped: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def count(self) -> int:
        """Values compared (neither null nor dropped)."""
        if self.values is not None:
            return int(self.values.size)
        return sum(self.counts.values()) if self.counts else 0


def kind_of_type(dtype: pa.DataType) -> Kind | None:
    """The kind an Arrow type is compared as, before looking at its values (None: not comparable)."""
    import pyarrow as pa

    if pa.types.is_dictionary(dtype):
        return CATEGORICAL
    if pa.types.is_boolean(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return CATEGORICAL
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return NUMERIC
    if pa.types.is_temporal(dtype):
        return NUMERIC
    return None


def label(value: object) -> str:
    """A category's text: the same for ``1``, ``1.0`` and ``"1"``, so sides of different types still match."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def _numbers(chunked: pa.ChunkedArray) -> tuple[np.ndarray[Any, np.dtype[np.float64]], int, list[str]]:
    """Finite values as float64 (unsorted), how many could not be read as numbers, and notes."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dtype = chunked.type
    notes: list[str] = []
    unreadable = 0
    if pa.types.is_dictionary(dtype):
        chunked = chunked.cast(dtype.value_type)
        dtype = chunked.type
    if pa.types.is_temporal(dtype):
        chunked = chunked.cast(pa.int64()) if dtype.bit_width == 64 else chunked.cast(pa.int32())
    elif pa.types.is_boolean(dtype):
        chunked = chunked.cast(pa.int8())
    elif pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        valid = chunked.is_valid()
        parsed = pc.cast(pc.if_else(pc.utf8_is_numeric(pc.utf8_trim_whitespace(chunked)), chunked, None), pa.float64())
        unreadable = int(pc.sum(pc.and_(valid, parsed.is_null())).as_py() or 0)
        if unreadable:
            example = pc.filter(chunked, pc.and_(valid, parsed.is_null()))[0].as_py()
            notes.append(f"{unreadable:,} values are not numbers (e.g. {example!r}); compared the rest")
        chunked = parsed
    array = chunked.to_numpy() if chunked.num_chunks != 1 else chunked.chunk(0).to_numpy(zero_copy_only=False)
    values = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        infinite = int(np.isinf(values).sum())
        if infinite:
            unreadable += infinite
            notes.append(f"{infinite:,} infinite values not compared")
        values = values[finite]
    return values, unreadable, notes


def _categories(chunked: pa.ChunkedArray) -> dict[str, int]:
    """Counts per category, chunk by chunk (dictionary chunks are counted on their indices, each with its own
    dictionary)."""
    import pyarrow.compute as pc

    found: Counter[str] = Counter()
    for chunk in chunked.chunks:
        counted = pc.value_counts(chunk)
        values = counted.field("values").to_pylist()
        counts = counted.field("counts").to_pylist()
        for value, count in zip(values, counts, strict=True):
            if value is not None:
                found[label(value)] += int(count)
    return dict(found)


def prepare_column(name: str, chunked: pa.ChunkedArray, kind: Kind) -> Column:
    """Read an Arrow column as ``kind``: sorted finite numbers, or category counts. Nulls and NaN are counted
    apart; text that is not a number in a numeric column is counted in ``dropped`` with a note."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = len(chunked)
    nulls = chunked.null_count
    if kind == NUMERIC:
        values, dropped, notes = _numbers(chunked)
        nulls = rows - dropped - int(values.size)
        values = np.sort(values)  # a copy: Arrow's buffers are read-only
        return Column(name, NUMERIC, rows, nulls, values=values, dropped=dropped, notes=tuple(notes))
    dtype = chunked.type
    notes = []
    if kind_of_type(dtype) == NUMERIC and not pa.types.is_temporal(dtype):
        values, dropped, _ = _numbers(chunked)
        nulls = rows - dropped - int(values.size)
        return Column(name, CATEGORICAL, rows, nulls, counts=_value_counts(values), dropped=dropped)
    if kind_of_type(dtype) is None or pa.types.is_temporal(dtype):
        notes.append(f"{dtype} values compared as text")
        chunked = pc.cast(chunked, pa.string()) if kind_of_type(dtype) else _as_text(chunked)
    counts = _categories(chunked)
    return Column(name, CATEGORICAL, rows, nulls, counts=counts, notes=tuple(notes))


def _as_text(chunked: pa.ChunkedArray) -> pa.ChunkedArray:
    import pyarrow as pa

    return pa.chunked_array([pa.array([None if v is None else str(v) for v in chunked.to_pylist()], pa.string())])


def distinct_at_most(sorted_values: np.ndarray[Any, np.dtype[np.float64]], bound: int) -> bool:
    """Whether a sorted array holds at most ``bound`` distinct values."""
    if sorted_values.size == 0:
        return True
    return int(np.count_nonzero(sorted_values[1:] != sorted_values[:-1])) + 1 <= bound


def as_categorical(column: Column) -> Column:
    """A numeric column's values as categories (for numbers with a handful of distinct values)."""
    assert column.values is not None
    return Column(
        column.name,
        CATEGORICAL,
        column.rows,
        column.nulls,
        counts=_value_counts(column.values),
        dropped=column.dropped,
        notes=column.notes,
    )


def _value_counts(values: np.ndarray[Any, np.dtype[np.float64]]) -> dict[str, int]:
    """How many times each number occurs, keyed by its category text."""
    uniques, counts = np.unique(values, return_counts=True)
    return {label(u): int(c) for u, c in zip(uniques.tolist(), counts.tolist(), strict=True)}
