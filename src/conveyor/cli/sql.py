"""``conveyor sql``: DuckDB SQL over the workspace's data assets."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace

if TYPE_CHECKING:
    from rich.console import Console

_SHOWN_BY_DEFAULT = 1000


def register(app: typer.Typer) -> None:
    @app.command("sql")
    def sql(
        ctx: typer.Context,
        query: Annotated[str, typer.Argument(help='SQL; assets are tables (latest version), "name:3" a version.')],
        csv: Annotated[bool, typer.Option("--csv", help="Print the rows as CSV.")] = False,
        save_as: Annotated[
            str | None, typer.Option("--save-as", help="Store the result as a new version of this asset.")
        ] = None,
        limit: Annotated[
            int | None,
            typer.Option(
                help=f"At most this many rows printed; default {_SHOWN_BY_DEFAULT} on a terminal, all otherwise.", min=1
            ),
        ] = None,
        json_output: JsonFlag = False,
    ) -> None:
        """Query data assets with DuckDB.

        Each asset is a table holding its latest version; a given version is a quoted name such as "churn:3"
        (or "churn@latest"). Examples:

          conveyor sql "SELECT plan, avg(churned::INT) AS rate FROM churn GROUP BY plan"

          conveyor sql 'SELECT * FROM "churn:1" WHERE tenure_months < 3' --save-as churn_new_customers
        """
        out = Output(json_output)
        ws = open_workspace(ctx)
        if save_as is not None:
            saved = ws.data.save_query(query, name=save_as)
            v = saved.version
            payload = {
                "name": v.name,
                "version": v.version,
                "created": saved.created,
                "rows": v.rows,
                "hash": v.content_hash,
            }
            out.emit(
                payload,
                lambda console: console.print(
                    f"[green]✓[/] {v.ref}: {v.rows:,} rows from {', '.join(v.source.get('inputs', [])) or 'the query'}"
                    if saved.created
                    else f"[yellow]=[/] {v.ref} already holds this result; no new version."
                ),
            )
            return
        shown = (
            limit
            if limit is not None
            else (_SHOWN_BY_DEFAULT if not (json_output or csv) and out.console.is_terminal else None)
        )
        result = ws.data.query(query, limit=shown)
        if csv:
            import pyarrow.csv as pa_csv

            pa_csv.write_csv(result.table, sys.stdout.buffer)
            sys.stdout.flush()
            return

        def human(console: Console) -> None:
            from rich.table import Table

            table = Table(*result.columns, box=None)
            for record in result.records():
                table.add_row(*("" if value is None else str(value) for value in record.values()))
            console.print(table)
            more = " (more rows not shown; raise --limit)" if result.truncated else ""
            console.print(f"[dim]{result.table.num_rows:,} rows{more}[/]")

        out.emit({"columns": result.columns, "rows": result.records()}, human)
