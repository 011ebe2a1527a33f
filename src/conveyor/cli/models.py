"""``conveyor models``: the model registry."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._app import open_workspace
from conveyor.cli._output import JsonFlag, Output, fmt_time
from conveyor.registry import ModelVersion

app = typer.Typer(no_args_is_help=True)


@app.command("list")
def list_models(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List registered models with their latest version and aliases."""
    out = Output(json_output)
    models = open_workspace(ctx).models.list()

    def human(console: Console) -> None:
        if not models:
            console.print("No models yet. 'conveyor quickstart' registers one.")
            return
        table = Table("name", "latest", "versions", "aliases", "created", box=None)
        for m in models:
            aliases = ", ".join(f"@{a}→{v}" for a, v in sorted(m.aliases.items()))
            table.add_row(
                m.name,
                f"{m.name}:{m.latest_version}",
                str(m.versions),
                aliases,
                fmt_time(m.created_at),
            )
        console.print(table)

    out.emit({"models": models}, human)


def _show_version(console: Console, v: ModelVersion) -> None:
    aliases = " ".join(f"@{a}" for a in v.aliases)
    console.print(f"[bold]{v.ref}[/] {aliases}  flavor {v.flavor}  {v.size:,} bytes  {v.digest}")
    console.print(f"registered {fmt_time(v.created_at)} by {v.created_by}; from run {v.run_id or '-'}")
    if v.metrics:
        console.print("metrics: " + ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items())))
    table = Table("input", "type", "required", box=None)
    for column in v.signature.get("inputs", []):
        table.add_row(column["name"], column["type"], "yes" if column.get("required", True) else "no")
    console.print(table)
    console.print("requirements: " + " ".join(v.requirements))


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    json_output: JsonFlag = False,
) -> None:
    """Show a model version: signature, metrics, requirements, aliases."""
    out = Output(json_output)
    v = open_workspace(ctx).models.get(ref)
    out.emit({**_fields(v), "ref": v.ref}, lambda console: _show_version(console, v))


@app.command("alias")
def alias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias, e.g. champion.")],
    version: Annotated[int, typer.Argument(help="Version number the alias points at.", min=1)],
    json_output: JsonFlag = False,
) -> None:
    """Point NAME@ALIAS at a version (moves the alias if it pointed elsewhere)."""
    out = Output(json_output)
    v = open_workspace(ctx).models.set_alias(name, alias_name, version)
    out.emit(
        {"name": v.name, "alias": alias_name, "version": v.version},
        lambda console: console.print(f"[green]✓[/] {name}@{alias_name} → {v.ref}"),
    )


def _fields(v: ModelVersion) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(v)
