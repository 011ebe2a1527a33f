"""``conveyor data``: ingest files as versioned assets, list, show and peek at versions."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._output import JsonFlag, Output, fmt_time
from conveyor.cli._state import open_workspace

app = typer.Typer(no_args_is_help=True)


@app.command("ingest")
def ingest(
    ctx: typer.Context,
    source: Annotated[
        str | None,
        typer.Argument(help="A CSV, JSON, JSON-lines or Parquet file: a local path, a URL, or a path in --store."),
    ] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="Asset name (letters, digits, _ . -).")] = "",
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="csv, json, jsonl or parquet; default: from the suffix.")
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", "-s", help="Datastore to read from (see 'data store').")
    ] = None,
    query: Annotated[str | None, typer.Option("--query", "-q", help="SQL to run on a database datastore.")] = None,
    incremental_column: Annotated[
        str | None,
        typer.Option(help="With --query: read only rows past the last run's maximum of this column, and append."),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(help="Validation rules (YAML, see docs/data-validation.md); bad rows go to NAME_quarantine."),
    ] = None,
    fail_on_invalid: Annotated[
        bool, typer.Option("--fail-on-invalid", help="Any rule failure is an error and nothing is committed.")
    ] = False,
    profile: Annotated[
        bool, typer.Option("--profile/--no-profile", help="Compute column statistics and store them with the version.")
    ] = True,
    bad_lines: Annotated[
        str,
        typer.Option(
            "--bad-lines",
            help="A CSV line with the wrong number of fields: error (refuse the file), skip (leave it out) or "
            "quarantine (leave it out and keep it, with its line number, in NAME_quarantine).",
        ),
    ] = "error",
    description: Annotated[str, typer.Option(help="What the asset holds.")] = "",
    json_output: JsonFlag = False,
) -> None:
    """Ingest a file or a SQL query's rows as a new immutable version of a data asset.

    Nothing changes when the content is what the latest version already holds. Examples:

      conveyor data ingest sales.csv --name sales

      conveyor data ingest --store warehouse --query "SELECT * FROM orders" --name orders --incremental-column id
    """
    from conveyor.errors import BadInput

    out = Output(json_output)
    if not name:
        raise BadInput("Give the asset a name with --name NAME.")
    ws = open_workspace(ctx)
    with out.err.status(f"ingesting into {name}…") if out.interactive else contextlib.nullcontext():
        result = ws.data.ingest(
            source,
            name=name,
            format=format,
            description=description,
            store=store,
            query=query,
            incremental_column=incremental_column,
            rules=rules,
            fail_on_invalid=fail_on_invalid,
            profile=profile,
            bad_lines=bad_lines,
        )
    v = result.version
    validation = v.validation or {}
    payload = {
        "name": v.name,
        "version": v.version,
        "created": result.created,
        "rows": v.rows,
        "hash": v.content_hash,
        "seconds": round(result.seconds, 3),
        "notes": result.notes,
        "quarantined": validation.get("rows_quarantined", 0),
        "quarantine": validation.get("quarantine"),
        "bad_lines": v.source.get("bad_lines"),
    }

    def human(console: Console) -> None:
        notes = f" ({'; '.join(result.notes)})" if result.notes else ""
        if result.created:
            console.print(
                f"[green]✓[/] {v.ref}: {v.rows:,} rows, {len(v.schema)} columns, {v.content_hash} "
                f"in {result.seconds:.2f}s{notes}"
            )
        else:
            console.print(f"[yellow]=[/] {v.ref} already holds this content; no new version{notes}.")

    out.emit(payload, human)


@app.command("list")
def list_assets(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List data assets with their latest version."""
    out = Output(json_output)
    assets = open_workspace(ctx).data.list()

    def human(console: Console) -> None:
        if not assets:
            console.print("No data assets yet. Ingest one with: conveyor data ingest FILE --name NAME")
            return
        table = Table("name", "latest", "versions", "created", "by", box=None)
        for a in assets:
            table.add_row(
                a.name,
                f"{a.name}:{a.latest_version}",
                str(a.versions),
                fmt_time(a.created_at),
                a.created_by,
            )
        console.print(table)

    out.emit({"assets": assets}, human)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@latest.")],
    json_output: JsonFlag = False,
) -> None:
    """Show a data version: rows, schema, files and source."""
    out = Output(json_output)
    v = open_workspace(ctx).data.get(ref)

    def human(console: Console) -> None:
        console.print(f"[bold]{v.ref}[/]  {v.rows:,} rows  {v.bytes:,} bytes  {v.content_hash}")
        console.print(f"created {fmt_time(v.created_at)} by {v.created_by}; source: {describe_source(v.source)}")
        table = Table("column", "type", "nullable", box=None)
        for column in v.schema:
            table.add_row(column["name"], column["type"], "yes" if column["nullable"] else "no")
        console.print(table)

    out.emit({**_asdict(v), "ref": v.ref}, human)


def describe_source(source: dict[str, Any]) -> str:
    """Where a version came from, in words: ``file /tmp/churn.csv (csv)``, ``endpoint churn``, ``sql on warehouse``."""
    kind = str(source.get("kind", "unknown"))
    where = source.get("path") or source.get("url") or source.get("endpoint") or source.get("store") or ""
    extra = [f"{k} {source[k]}" for k in ("format", "query", "monitor", "topic", "mode") if source.get(k)]
    text = f"{kind} {where}".strip()
    return f"{text} ({', '.join(extra)})" if extra else text


@app.command("head")
def head(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@latest.")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="How many rows.", min=1, max=10_000)] = 10,
    columns: Annotated[
        str | None, typer.Option("--columns", "-c", help="Only these columns, comma-separated, in this order.")
    ] = None,
    wide: Annotated[
        bool, typer.Option("--wide", "-w", help="Every column, even past the terminal's width (no truncation).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Print the first rows of a data version.

    On a narrow terminal the columns that fit are shown whole and the rest are named below the table
    (--wide prints them all; --columns picks them).
    """
    from conveyor.errors import BadInput, did_you_mean

    out = Output(json_output)
    ws = open_workspace(ctx)
    version = ws.data.get(ref)
    table_data = ws.data.read_table(version).slice(0, rows)
    if columns:
        chosen = [c.strip() for c in columns.split(",") if c.strip()]
        unknown = [c for c in chosen if c not in table_data.column_names]
        if unknown:
            hint = did_you_mean(unknown[0], table_data.column_names)
            raise BadInput(f"{version.ref} has no column {unknown[0]!r}.{hint}")
        table_data = table_data.select(chosen)
    records = table_data.to_pylist()

    def human(console: Console) -> None:
        names = table_data.column_names
        cells = {n: ["" if r[n] is None else str(r[n]) for r in records] for n in names}
        widths = {n: min(max([len(n), *map(len, cells[n])]), 40) for n in names}
        shown: list[str] = []
        used = 0
        for n in names:
            if not wide and shown and used + widths[n] + 2 > console.width:  # each cell is padded by one a side
                break
            shown.append(n)
            used += widths[n] + 2
        table = Table(box=None)
        for n in shown:
            table.add_column(n, no_wrap=not wide, overflow="fold" if wide else "ellipsis", max_width=None)
        for i in range(len(records)):
            table.add_row(*(cells[n][i] for n in shown))
        if wide:
            console.width = max(console.width, used)
        console.print(table)
        hidden = names[len(shown) :]
        if hidden:
            listed = ", ".join(hidden[:8]) + (", …" if len(hidden) > 8 else "")
            note = f"+{len(hidden)} more column(s): {listed} (--wide for all, --columns to choose)"
            console.print(note, style="dim", soft_wrap=False)

    out.emit({"ref": version.ref, "columns": table_data.column_names, "rows": records}, human)


@app.command("export")
def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@latest.")],
    path: Annotated[str, typer.Argument(help="File to write (.parquet, .csv or .jsonl).")],
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="parquet, csv or jsonl; default: from the suffix.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Write a data version to a file (it appears whole or not at all)."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    version = ws.data.get(ref)
    written = ws.data.export(version, path, format=format)
    out.emit(
        {"ref": version.ref, "path": str(written), "rows": version.rows},
        lambda console: console.print(f"[green]✓[/] {version.ref} ({version.rows:,} rows) → {written}"),
    )


def _asdict(value: object) -> dict[str, object]:
    from dataclasses import asdict, is_dataclass

    assert is_dataclass(value) and not isinstance(value, type)
    return asdict(value)


store_app = typer.Typer(
    no_args_is_help=True, help="Datastores: where data comes from (folders, buckets, databases, URLs)."
)
app.add_typer(store_app, name="store")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    from conveyor.errors import BadInput

    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"{what} {item!r} must look like KEY=VALUE.")
        pairs[key] = value
    return pairs


@store_app.command("add")
def store_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Datastore name.")],
    url: Annotated[
        str,
        typer.Argument(
            help="A folder, an fsspec URL (s3://bucket/prefix, https://host/path) or a SQLAlchemy URL "
            "(postgresql://user@host/db, mysql://user@host/db, sqlite:////path.db), without a password."
        ),
    ],
    option: Annotated[list[str], typer.Option("--option", "-o", help="Connection option KEY=VALUE (repeatable).")] = [],  # noqa: B006
    credential: Annotated[
        list[str],
        typer.Option("--credential", "-c", help="Credential reference, e.g. password=env:PGPASSWORD (repeatable)."),
    ] = [],  # noqa: B006
    description: Annotated[str, typer.Option(help="What the datastore is.")] = "",
    check: Annotated[bool, typer.Option("--check/--no-check", help="Connect once to prove it works.")] = True,
    json_output: JsonFlag = False,
) -> None:
    """Register a datastore. Secrets are never stored: pass references such as password=env:PGPASSWORD."""
    out = Output(json_output)
    store = open_workspace(ctx).datastores.add(
        name,
        url,
        options=_pairs(option, "--option"),
        credentials=_pairs(credential, "--credential"),
        description=description,
        check=check,
    )
    out.emit(store, lambda console: console.print(f"[green]✓[/] datastore {store.name} ({store.kind}) → {store.url}"))


@store_app.command("list")
def store_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List datastores."""
    out = Output(json_output)
    stores = open_workspace(ctx).datastores.list()

    def human(console: Console) -> None:
        if not stores:
            console.print("No datastores yet. Add one with: conveyor data store add NAME URL")
            return
        table = Table("name", "kind", "url", "credentials", box=None)
        for s in stores:
            table.add_row(s.name, s.kind, s.url, ", ".join(f"{k}={v}" for k, v in s.credentials.items()))
        console.print(table)

    out.emit({"datastores": stores}, human)


@store_app.command("show")
def store_show(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Datastore name.")], json_output: JsonFlag = False
) -> None:
    """Show a datastore (credentials as the references they are)."""
    out = Output(json_output)
    s = open_workspace(ctx).datastores.get(name)
    out.emit(
        s,
        lambda console: console.print(
            f"[bold]{s.name}[/] {s.kind} {s.url} options={s.options} credentials={s.credentials}"
        ),
    )


@store_app.command("remove")
def store_remove(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Datastore name.")], json_output: JsonFlag = False
) -> None:
    """Remove a datastore (data already ingested from it stays)."""
    out = Output(json_output)
    open_workspace(ctx).datastores.remove(name)
    out.emit({"removed": name}, lambda console: console.print(f"[green]✓[/] removed datastore {name}"))
