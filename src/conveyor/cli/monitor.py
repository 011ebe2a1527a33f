"""``conveyor monitor …``: reference profiles of model versions (later: monitors of endpoints, alerts, the loop)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._app import open_workspace
from conveyor.cli._output import JsonFlag, Output

app = typer.Typer(no_args_is_help=True)


@app.command("profile")
def profile(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model version: name, name:3 or name@alias.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Reference data (a data version or a CSV/Parquet file); default: the data the training run read.",
        ),
    ] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Compute it again even if the version has one.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Show (computing and storing it the first time) a model version's reference profile: per input column and
    for its predictions on the training data, what drift compares new data with. Computed out of core, once.

    Then compare any data with it: conveyor drift model:churn@champion today.parquet

    Examples:

      conveyor monitor profile churn@champion

      conveyor monitor profile churn:3 --data churn:2 --json
    """
    out = Output(json_output)
    ws = open_workspace(ctx)
    result = ws.monitors.reference(model, data, refresh=refresh or data is not None)
    summary = result.summary()

    def human(console: Console) -> None:
        table = Table("column", "kind", "values", "nulls", "summary", box=None)
        for c in summary["columns"]:
            if c["kind"] is None:
                table.add_row(c["column"], "—", "—", "—", f"[dim]skipped: {c['skipped']}[/]")
                continue
            if c["kind"] == "numeric":
                about = f"{c['minimum']:.4g} … {c['maximum']:.4g}, mean {c['mean']:.4g}, std {c['std']:.4g}"
            else:
                about = f"{c['categories']:,} categories"
            table.add_row(c["column"], c["kind"], f"{c['count']:,}", f"{c['nulls']:,}", about)
        console.print(table)
        console.print(
            f"Reference profile of {model}: {summary['rows']:,} rows of {summary['source']}, computed "
            f"{summary['created_at'][:19].replace('T', ' ')} UTC in {summary['seconds']:.2f} s. "
            f"Compare data with it: conveyor drift model:{model} DATA"
        )

    out.emit({"model": model, **summary}, human)
