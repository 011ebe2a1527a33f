"""Reading a SQL query into the lake's Parquet, whole or incrementally past a watermark column."""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.errors import BadInput

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["QueryRead", "decode_watermark", "encode_watermark", "read_query"]

_BATCH_ROWS = 100_000


@dataclass(frozen=True)
class QueryRead:
    rows: int
    watermark: dict[str, Any] | None


def encode_watermark(value: Any) -> dict[str, Any]:
    """A watermark value as JSON: ``{"type", "value"}`` (datetimes and dates as ISO 8601)."""
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, bool):
        raise BadInput("A watermark column must increase (a number, a date or time, or text), not a boolean.")
    if isinstance(value, int):
        return {"type": "int", "value": value}
    if isinstance(value, float):
        return {"type": "float", "value": value}
    if isinstance(value, decimal.Decimal):
        return {"type": "decimal", "value": str(value)}
    return {"type": "str", "value": str(value)}


def decode_watermark(state: dict[str, Any]) -> Any:
    """The watermark value to bind in the next query."""
    kind, value = state["type"], state["value"]
    if kind == "datetime":
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind == "decimal":
        return decimal.Decimal(value)
    return value


def read_query(
    engine: Engine,
    query: str,
    dest: Path,
    *,
    watermark_column: str | None = None,
    after: Any = None,
) -> QueryRead:
    """Run ``query`` and write its rows to ``dest`` as Parquet; with ``watermark_column``, only rows whose
    column is greater than ``after`` (all rows when ``after`` is None), and report the new maximum.

    Raises:
        BadInput: the query fails or the watermark column is not in its result.
        sqlalchemy.exc.OperationalError: the database cannot be reached (the caller reports it).
    """
    import polars as pl

    statement, params = _statement(engine, query, watermark_column, after)
    frames: list[pl.DataFrame] = []
    try:
        with engine.connect() as conn:
            batches = pl.read_database(
                sa.text(statement).bindparams(**params) if params else sa.text(statement),
                conn.execution_options(stream_results=True),
                iter_batches=True,
                batch_size=_BATCH_ROWS,
                infer_schema_length=None,
            )
            frames.extend(batches)
    except (sa.exc.ProgrammingError, sa.exc.DatabaseError) as exc:
        if isinstance(exc, sa.exc.OperationalError) and _is_connection_error(exc):
            raise
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        hint = f" Is {watermark_column!r} a column of the query's result?" if watermark_column else ""
        raise BadInput(f"The query failed: {reason}.{hint} Query: {query.strip()[:300]}", query=query) from exc
    frame = pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()
    if watermark_column is not None and frame.width and watermark_column not in frame.columns:
        from conveyor.errors import did_you_mean

        suggestion = did_you_mean(watermark_column, frame.columns)
        raise BadInput(f"The watermark column {watermark_column!r} is not in the query's result.{suggestion}")
    if frame.height == 0:
        return QueryRead(0, None)
    frame = frame.with_columns(pl.col(pl.Decimal).cast(pl.Float64))
    frame.write_parquet(dest, compression="lz4", statistics=True)
    watermark = None
    if watermark_column is not None:
        watermark = encode_watermark(frame.get_column(watermark_column).max())
    return QueryRead(frame.height, watermark)


def _statement(engine: Engine, query: str, column: str | None, after: Any) -> tuple[str, dict[str, Any]]:
    body = query.strip().rstrip(";").strip()
    if not body:
        raise BadInput("The query is empty; give a SELECT statement.")
    if column is None:
        return body, {}
    quoted = engine.dialect.identifier_preparer.quote(column)
    wrapped = f"SELECT * FROM ({body}) AS conveyor_source"
    if after is None:
        return f"{wrapped} ORDER BY conveyor_source.{quoted}", {}
    return f"{wrapped} WHERE conveyor_source.{quoted} > :conveyor_watermark ORDER BY conveyor_source.{quoted}", {
        "conveyor_watermark": after
    }


def _is_connection_error(exc: sa.exc.OperationalError) -> bool:
    text = str(exc.orig or exc).lower()
    return any(n in text for n in ("connect", "connection", "timeout", "refused", "resolve host", "server has gone"))
