"""``conveyor runs``: tracked runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._app import open_workspace
from conveyor.cli._output import JsonFlag, Output, fmt_time

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    experiment: Annotated[str | None, typer.Option("--experiment", "-e", help="Only this experiment's runs.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1, max=10_000)] = 20,
    json_output: JsonFlag = False,
) -> None:
    """List the most recent runs, newest first."""
    out = Output(json_output)
    runs = open_workspace(ctx).runs.list(experiment=experiment, limit=limit)

    def human(console: Console) -> None:
        if not runs:
            console.print("No runs yet. 'conveyor quickstart' makes one.")
            return
        table = Table(box=None)
        for column in ("id", "experiment", "status", "started", "seconds"):
            table.add_column(column, no_wrap=True)
        table.add_column("metrics")
        for r in runs:
            metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items())[:3])
            seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
            table.add_row(r.id, r.experiment, r.status, fmt_time(r.started_at), seconds, metrics)
        console.print(table)

    out.emit({"runs": runs}, human)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    json_output: JsonFlag = False,
) -> None:
    """Show one run: status, parameters, metrics, tags, inputs and artifacts."""
    out = Output(json_output)
    r = open_workspace(ctx).runs.get(run_id)

    def human(console: Console) -> None:
        console.print(f"[bold]run {r.id}[/]  experiment {r.experiment}  [bold]{r.status}[/]")
        seconds = "" if r.seconds is None else f" ({r.seconds:.1f}s)"
        console.print(f"started {fmt_time(r.started_at)} by {r.created_by}{seconds}")
        if r.error:
            console.print(f"[red]error:[/] {r.error}")
        for title, values in (("parameters", r.params), ("metrics", r.metrics), ("tags", r.tags)):
            if values:
                table = Table(title, "", box=None, title_justify="left")
                for key, value in sorted(values.items()):
                    table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
                console.print(table)
        if r.inputs:
            console.print("inputs: " + ", ".join(r.inputs))
        for a in r.artifacts:
            console.print(f"artifact {a.path}  {a.size:,} bytes  {a.digest}")

    out.emit(r, human)
