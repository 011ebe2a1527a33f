"""SQL over data assets with DuckDB.

Every asset is a table named after it, holding its latest version. A specific version is a quoted name:
``SELECT * FROM "churn:3"`` (also ``"churn@latest"``). Only the assets a query names are opened. The Parquet
files are read where they are: verified local blobs, or objects in the remote store through fsspec.

Queries run in a sandbox: only SELECT statements; DuckDB's external access is off, with exactly the Parquet
parts of the versions the query names allowed (``allowed_paths``) and a private, empty temporary folder for
spilling; extensions are neither installed nor loaded; and the configuration is locked, so a query cannot
turn any of it back on. ``read_csv('/etc/passwd')``, ``glob``, ``ATTACH``, ``COPY … TO``, ``INSTALL``, ``SET``
and the like fail with :class:`~conveyor.errors.BadInput`.
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
    """Run a DuckDB query over the workspace's data assets, in the sandbox the module describes.

    Raises:
        BadInput: the SQL does not parse, is not a SELECT, reaches outside the workspace's assets, or fails.
        NotFound: it names an asset or version that does not exist (with "did you mean").
    """
    import shutil

    import duckdb

    if not query.strip():
        raise BadInput("The query is empty; give a SELECT statement, e.g. SELECT count(*) FROM churn.")
    artifacts = data._ws.artifacts
    connection = duckdb.connect(config=_CONNECT_CONFIG)
    scratch = None
    try:
        _check_statements(connection, query)
        views = _resolve(data, _table_names(connection, query))
        if not artifacts.is_local and views:
            connection.register_filesystem(artifacts.fs)
        scratch = artifacts.scratch_dir()
        _lock_down(connection, [p for _, _, paths in views for p in paths], str(scratch))
        for name, _, paths in views:
            listing = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
            quoted = '"' + name.replace('"', '""') + '"'
            connection.execute(f"CREATE VIEW {quoted} AS SELECT * FROM read_parquet([{listing}])")
        try:
            reader = connection.sql(query)
            if reader is None:
                raise BadInput("The query returned no result; use a SELECT (Conveyor's assets are read-only here).")
            table, truncated = _fetch(reader, limit)
        except duckdb.CatalogException as exc:
            if _reaches_outside(str(exc)):
                raise BadInput(f"{_OUTSIDE} ({_first_line(exc)}).", query=query) from exc
            assets = ", ".join(a.name for a in data.list()) or "none yet"
            raise NotFound(f"{_first_line(exc)} The workspace's data assets are: {assets}.", query=query) from exc
        except duckdb.PermissionException as exc:
            raise BadInput(f"{_OUTSIDE} ({_first_line(exc)}).", query=query) from exc
        except duckdb.Error as exc:
            if "configuration has been locked" in str(exc):
                raise BadInput(f"{_OUTSIDE} ({_first_line(exc)}).", query=query) from exc
            raise BadInput(f"The query failed: {_first_line(exc)}", query=query) from exc
        inputs: dict[str, DataVersion] = {v.id: v for _, v, _ in views}
        return QueryResult(table, list(inputs.values()), truncated)
    finally:
        connection.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


_CONNECT_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,  # no reading the caller's Python variables as tables
}

_OUTSIDE = (
    'SQL here reads only the workspace\'s data assets (tables named after them, such as churn or "churn:3"): '
    "files, URLs, globs, extensions, other databases and settings are out of its reach. Ingest a file first "
    "with 'conveyor data ingest', then query the asset"
)

_REFUSED_STATEMENTS = {
    "ATTACH": "ATTACH (other databases)",
    "DETACH": "DETACH",
    "COPY": "COPY (reading or writing files)",
    "COPY_DATABASE": "COPY (reading or writing files)",
    "EXPORT": "EXPORT DATABASE (writing files)",
    "LOAD": "INSTALL/LOAD (extensions)",
    "SET": "SET/RESET (settings)",
    "VARIABLE_SET": "SET VARIABLE (settings)",
    "PRAGMA": "PRAGMA (settings)",
    "CALL": "CALL",
}


def _reaches_outside(message: str) -> bool:
    """A catalog error about a file used as a table, or a function of an extension (never loaded here)."""
    import re

    table = re.search(r"Table with name (.+?) does not exist", message)
    return bool(table and ("/" in table.group(1) or "\\" in table.group(1))) or "extension" in message.lower()


def _check_statements(connection: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but SELECT statements, naming the first other kind."""
    import duckdb

    try:
        statements = connection.extract_statements(query)
    except duckdb.Error as exc:
        raise BadInput(f"The query does not parse: {_first_line(exc)}", query=query) from exc
    if not statements:
        raise BadInput("The query is empty; give a SELECT statement, e.g. SELECT count(*) FROM churn.")
    for statement in statements:
        kind = statement.type.name
        if kind != "SELECT":
            what = _REFUSED_STATEMENTS.get(kind, kind.replace("_", " "))
            shown = statement.query.strip().rstrip(";")[:80]
            raise BadInput(
                f"Only SELECT queries can run over data assets; {shown!r} is a {what} statement, which is refused. "
                f"{_OUTSIDE}.",
                query=query,
            )


def _lock_down(connection: duckdb.DuckDBPyConnection, paths: list[str], scratch: str) -> None:
    """External access off but for exactly ``paths`` (and ``scratch`` for spilling); configuration locked."""
    connection.execute("SET temp_directory = ?", [scratch])  # also DuckDB's only allowed folder from now on
    if paths:
        connection.execute("SET allowed_paths = ?", [sorted(set(paths))])
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")


def _resolve(data: DataAssets, names: set[str]) -> list[tuple[str, DataVersion, list[str]]]:
    """For each asset (or version) the query names: the table name, the version, and its parts' paths."""
    known = [a.name for a in data.list()]
    artifacts = data._ws.artifacts
    views: list[tuple[str, DataVersion, list[str]]] = []
    for name in sorted(names):
        try:
            ref = parse_ref(name, "data asset")
        except InvalidReference:
            if "/" in name or "\\" in name:  # a file path or URL used as a table: out of reach
                raise BadInput(f"{_OUTSIDE} ({name!r} is a file, not a data asset).", query=name) from None
            continue  # not one of ours (a quoted CTE name): DuckDB resolves it, inside the sandbox
        if ref.name not in known:
            if ref.version is None and ref.alias is None:
                continue  # perhaps a CTE; DuckDB will say if it is unknown
            raise NotFound(f"No data asset named {ref.name!r}.{did_you_mean(ref.name, known)}", name=ref.name)
        version = data.get(ref)
        paths = [
            str(artifacts.verified_path(f["digest"])) if artifacts.is_local else artifacts.path_of(f["digest"])
            for f in version.files
        ]
        views.append((name, version, paths))
    return views


def _table_names(connection: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    """The table names a query reads, from DuckDB's own parse tree (nothing is bound or run)."""
    import json

    # fetchall, not fetchone: a result left unfinished blocks the connection ("unfinished result").
    rows = connection.execute("SELECT json_serialize_sql(?)", [query]).fetchall()
    tree = json.loads(rows[0][0])
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
