"""One side of a comparison or a profile: Parquet files read a column (or a batch) at a time, or an Arrow table."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import BadInput

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["Table"]


class Table:
    """One side of a comparison: Parquet files read a column at a time, or an Arrow table in memory."""

    def __init__(
        self,
        label: str,
        *,
        parquet: Sequence[Path] = (),
        table: pa.Table | None = None,
        notes: Mapping[str, str] | None = None,
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.label = label
        self.notes = dict(notes or {})
        self._table = table
        self._files = []
        for path in parquet:  # text columns are read as dictionaries: counting categories is then cheap
            schema = pq.read_schema(path)
            text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            self._files.append(pq.ParquetFile(path, read_dictionary=text))
        if table is not None:
            self.schema = table.schema
            self.rows = table.num_rows
        elif self._files:
            self.schema = self._files[0].schema_arrow
            self.rows = sum(f.metadata.num_rows for f in self._files)
        else:
            raise BadInput(f"{label} has no data files.")

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def column(self, name: str) -> pa.ChunkedArray:
        import pyarrow as pa

        if self._table is not None:
            return self._table.column(name)
        chunks: list[pa.Array] = []
        for f in self._files:
            if name not in f.schema_arrow.names:
                continue
            chunks.extend(f.read(columns=[name]).column(0).chunks)
        return pa.chunked_array(chunks) if chunks else pa.chunked_array([], type=self.schema.field(name).type)

    def batches(self, name: str, rows: int) -> Iterator[pa.ChunkedArray]:
        """One column, ``rows`` at a time (flat memory whatever the table's size)."""
        import pyarrow as pa

        if self._table is not None:
            column = self._table.column(name)
            for start in range(0, len(column), rows):
                yield column.slice(start, rows)
            return
        for f in self._files:
            if name in f.schema_arrow.names:
                for batch in f.iter_batches(batch_size=rows, columns=[name], use_threads=False):
                    yield pa.chunked_array([batch.column(0)])

    def row_batches(self, names: Sequence[str], rows: int) -> Iterator[pa.Table]:
        """Several columns, ``rows`` at a time, as small tables."""
        import pyarrow as pa

        if self._table is not None:
            selected = self._table.select(list(names))
            for start in range(0, selected.num_rows, rows):
                yield selected.slice(start, rows)
            return
        for f in self._files:
            for batch in f.iter_batches(batch_size=rows, columns=list(names)):
                yield pa.Table.from_batches([batch])
