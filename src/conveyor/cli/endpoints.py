"""``conveyor endpoints``: deploy model versions as HTTP endpoints, list, show, invoke and stop them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._app import open_workspace
from conveyor.cli._output import JsonFlag, Output, fmt_time
from conveyor.errors import BadInput, NotFound
from conveyor.serve import Endpoint

app = typer.Typer(no_args_is_help=True)


def _show(console: Console, endpoint: Endpoint) -> None:
    console.print(f"[bold]{endpoint.name}[/]  {endpoint.url or '(not running)'}")
    table = Table(box=None)
    for column in ("deployment", "model", "traffic", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("url", overflow="fold")
    table.add_column("pid", no_wrap=True)
    table.add_column("updated")
    for d in endpoint.deployments:
        table.add_row(
            d.name,
            d.model,
            f"{d.traffic}%",
            d.status,
            d.url or "",
            str(d.pid or ""),
            fmt_time(d.updated_at),
        )
    console.print(table)


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Endpoint name (created if new).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model version: NAME, NAME:VERSION or NAME@ALIAS.")],
    deployment: Annotated[str, typer.Option(help="Deployment name within the endpoint.")] = "default",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).", min=0, max=65535)] = 0,
    json_output: JsonFlag = False,
) -> None:
    """Serve a model version over HTTP in its own process (it keeps running after this command)."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    with out.err.status(f"deploying {model} to {name}…") if out.interactive else _nothing():
        d = ws.endpoints.deploy(name, model, deployment=deployment, port=port)
    out.emit(
        d,
        lambda console: console.print(f"[green]✓[/] {d.model} serving at {d.predict_url} (process {d.pid})"),
    )


@app.command("list")
def list_endpoints(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List endpoints and their deployments."""
    out = Output(json_output)
    endpoints = open_workspace(ctx).endpoints.list()

    def human(console: Console) -> None:
        if not endpoints:
            console.print("No endpoints yet. Deploy one with: conveyor endpoints deploy NAME --model MODEL@champion")
        for e in endpoints:
            _show(console, e)

    out.emit({"endpoints": endpoints}, human)


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    json_output: JsonFlag = False,
) -> None:
    """Show an endpoint: URL, deployments, models, status."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.get(name)
    out.emit(endpoint, lambda console: _show(console, endpoint))


@app.command("invoke")
def invoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSON file: a list of records.")],
    json_output: JsonFlag = False,
) -> None:
    """Score the records in a JSON file through the endpoint."""
    out = Output(json_output)
    records = _read_records(data)
    predictions = open_workspace(ctx).endpoints.invoke(name, records)
    out.emit({"predictions": predictions}, lambda console: console.print(predictions))


@app.command("stop")
def stop(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Endpoint name.")],
    json_output: JsonFlag = False,
) -> None:
    """Stop an endpoint's serving processes (in-flight requests finish first)."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.stop(name)
    out.emit(endpoint, lambda console: console.print(f"[green]✓[/] stopped {name}"))


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise NotFound(f"No such file: {str(path)!r}.")
    try:
        records = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{str(path)!r} is not valid JSON: {exc}.") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadInput(f"{str(path)!r} must hold a JSON list of records (objects).")
    return records


def _nothing() -> Any:
    import contextlib

    return contextlib.nullcontext()
