"""SQL over data assets with DuckDB.

Every asset is a table named after it, holding its latest version. A specific version is a quoted name:
``SELECT * FROM "churn:3"`` (also ``"churn@latest"``). Only the assets a query names are opened. The Parquet
files are read where they are: verified local blobs, or objects in the remote store through fsspec.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.errors import BadInput, InvalidReference, NotFound, did_you_mean
from conveyor.refs import parse_ref

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from conveyor.data._assets import DataAssets, DataVersion

__all__ = ["QueryResult", "run_query"]


@dataclass(frozen=True)
class QueryResult:
    """A query's rows (Arrow), the data versions it read, and whether rows were cut at ``limit``."""

    table: pa.Table
    inputs: list[DataVersion]
    truncated: bool

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def records(self) -> list[dict[str, Any]]:
        return list(self.table.to_pylist())


def run_query(data: DataAssets, query: str, *, limit: int | None = None) -> QueryResult:
    """Run a DuckDB query over the workspace's data assets.

    Raises:
        BadInput: the SQL does not parse or fails.
        NotFound: it names an asset or version that does not exist (with "did you mean").
    """
    import duckdb

    if not query.strip():
        raise BadInput("The query is empty; give a SELECT statement, e.g. SELECT count(*) FROM churn.")
    connection = duckdb.connect()
    try:
        inputs = _attach(connection, data, query)
        try:
            reader = connection.sql(query)
        except duckdb.CatalogException as exc:
            assets = ", ".join(a.name for a in data.list()) or "none yet"
            raise NotFound(f"{_first_line(exc)} The workspace's data assets are: {assets}.", query=query) from exc
        except duckdb.Error as exc:
            raise BadInput(f"The query failed: {_first_line(exc)}", query=query) from exc
        if reader is None:
            raise BadInput("The query returned no result; use a SELECT (Conveyor's assets are read-only here).")
        try:
            table, truncated = _fetch(reader, limit)
        except duckdb.Error as exc:
            raise BadInput(f"The query failed: {_first_line(exc)}", query=query) from exc
        return QueryResult(table, inputs, truncated)
    finally:
        connection.close()


def _attach(connection: duckdb.DuckDBPyConnection, data: DataAssets, query: str) -> list[DataVersion]:
    """Create a view for each asset (or version) the query names; return the versions behind them."""
    known = [a.name for a in data.list()]
    attached: dict[str, DataVersion] = {}
    remote_registered = False
    for name in _table_names(connection, query):
        try:
            ref = parse_ref(name, "data asset")
        except InvalidReference:
            continue  # not one of ours (a CTE, a file path): DuckDB resolves it
        if ref.name not in known:
            if ref.version is None and ref.alias is None:
                continue  # perhaps a CTE; DuckDB will say if it is unknown
            raise NotFound(f"No data asset named {ref.name!r}.{did_you_mean(ref.name, known)}", name=ref.name)
        version = data.get(ref)
        artifacts = data._ws.artifacts
        if not artifacts.is_local and not remote_registered:
            connection.register_filesystem(artifacts.fs)
            remote_registered = True
        paths = [
            str(artifacts.verified_path(f["digest"])) if artifacts.is_local else artifacts.path_of(f["digest"])
            for f in version.files
        ]
        listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        quoted = '"' + name.replace('"', '""') + '"'
        connection.execute(f"CREATE VIEW {quoted} AS SELECT * FROM read_parquet([{listing}])")
        attached[version.id] = version
    return list(attached.values())


def _table_names(connection: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    """The table names a query reads, from DuckDB's own parse tree (nothing is bound or run)."""
    import json

    tree = json.loads(connection.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])  # type: ignore[index]
    if tree.get("error"):
        message = tree.get("error_message", "it does not parse")
        if tree.get("error_subtype") == "SYNTAX_ERROR" or "syntax" in message.lower():
            raise BadInput(f"The query does not parse: {message}.", query=query)
        raise BadInput(f"Only SELECT queries can run over data assets ({message}).", query=query)
    names: set[str] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and node.get("table_name"):
                names.add(str(node["table_name"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return names


def _fetch(relation: duckdb.DuckDBPyRelation, limit: int | None) -> tuple[pa.Table, bool]:
    import pyarrow as pa

    reader = relation.arrow()
    if not isinstance(reader, pa.RecordBatchReader):  # older DuckDB returns a Table
        table = reader
        if limit is not None and table.num_rows > limit:
            return table.slice(0, limit), True
        return table, False
    batches: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        if limit is not None and rows + batch.num_rows > limit:
            batches.append(batch.slice(0, limit - rows))
            return pa.Table.from_batches(batches, schema=reader.schema), True
        batches.append(batch)
        rows += batch.num_rows
    return pa.Table.from_batches(batches, schema=reader.schema), False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
