"""``conveyor models``: the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from conveyor.cli._output import JsonFlag, Output, fmt_time
from conveyor.cli._state import open_workspace
from conveyor.errors import BadInput

if TYPE_CHECKING:
    from rich.console import Console

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
    console.print(f"[bold]{v.ref}[/] {aliases}  flavor {v.flavor}  format {v.format}  {v.size:,} bytes  {v.digest}")
    console.print(f"registered {fmt_time(v.created_at)} by {v.created_by}; from run {v.run_id or '-'}")
    if v.inputs:
        console.print("trained on: " + ", ".join(v.inputs))
    if v.description:
        console.print(v.description)
    if v.tags:
        console.print("tags: " + ", ".join(f"{k}={val}" for k, val in sorted(v.tags.items())))
    if v.files:
        console.print("files: " + ", ".join(sorted(v.files)))
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


@app.command("unalias")
def unalias(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="Alias to remove.")],
    json_output: JsonFlag = False,
) -> None:
    """Remove NAME@ALIAS (the version it pointed at stays)."""
    out = Output(json_output)
    open_workspace(ctx).models.delete_alias(name, alias_name)
    out.emit(
        {"name": name, "alias": alias_name, "deleted": True},
        lambda console: console.print(f"[green]✓[/] removed {name}@{alias_name}"),
    )


@app.command("register")
def register(
    ctx: typer.Context,
    run: Annotated[str, typer.Option("--run", help="Id of the run that logged the model.")],
    name: Annotated[str, typer.Option("--name", help="Model name; the version is the next number.")],
    artifact: Annotated[str, typer.Option("--artifact", help="Folder the run logged the model under.")] = "model",
    description: Annotated[str, typer.Option("--description", help="What this version is.")] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="KEY=VALUE tag (repeatable).")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Register the model a run logged as the next version of NAME (signature, requirements, metrics, lineage)."""
    out = Output(json_output)
    tags = _parse_tags(tag or [])
    v = open_workspace(ctx).models.register_from_run(run, name, artifact, description=description, tags=tags)
    out.emit(
        {**_fields(v), "ref": v.ref},
        lambda console: console.print(f"[green]✓[/] registered {v.ref} ({v.format}) from run {run}"),
    )


@app.command("tag")
def tag(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION or NAME@ALIAS.")],
    tags: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="Tags to set.")],
    json_output: JsonFlag = False,
) -> None:
    """Set tags on a model version (other tags stay)."""
    out = Output(json_output)
    v = open_workspace(ctx).models.set_tags(ref, _parse_tags(tags))
    out.emit(
        {"ref": v.ref, "tags": v.tags},
        lambda console: console.print(f"[green]✓[/] {v.ref} tags: " + ", ".join(f"{k}={t}" for k, t in v.tags.items())),
    )


@app.command("untag")
def untag(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION or NAME@ALIAS.")],
    keys: Annotated[list[str], typer.Argument(metavar="KEY...", help="Tag keys to remove.")],
    json_output: JsonFlag = False,
) -> None:
    """Remove tags from a model version."""
    out = Output(json_output)
    v = open_workspace(ctx).models.delete_tags(ref, keys)
    out.emit(
        {"ref": v.ref, "tags": v.tags},
        lambda console: console.print(f"[green]✓[/] removed {', '.join(keys)} from {v.ref}"),
    )


@app.command("export")
def export(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS.")],
    path: Annotated[str, typer.Argument(metavar="DIR", help="Folder to write (must be new or empty).")],
    fmt: Annotated[str, typer.Option("--format", help="mlflow (MLmodel folder) or onnx (model.onnx).")] = "mlflow",
    data: Annotated[
        str | None,
        typer.Option("--data", help="Data version to check an ONNX conversion on (default: the stored example)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace DIR if it is not empty.")] = False,
    code: Annotated[
        list[str] | None,
        typer.Option(
            "--code",
            metavar="PATH",
            help="MLflow: a .py file or package folder holding the model's own classes, bundled under code/ "
            "(repeatable).",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Write a model version as an MLflow model or as ONNX (checked against the model on validation rows)."""
    out = Output(json_output)
    result = open_workspace(ctx).models.export(
        ref,
        path,
        format=fmt,  # type: ignore[arg-type]
        force=force,
        validation=data,
        code=code or (),
    )

    def human(console: Console) -> None:
        console.print(f"[green]✓[/] {result.ref} → {result.path} ({result.format}): {', '.join(result.files)}")
        if result.max_abs_diff is not None:
            console.print(
                f"ONNX Runtime matches the model on {result.rows_checked} rows "
                f"(max abs difference {result.max_abs_diff:.2g})"
            )

    out.emit(result, human)


@app.command("card")
def card(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Model version: name, name:3 or name@alias.", show_default=False)],
    owner: Annotated[str | None, typer.Option("--owner", help="Set who answers for this model.")] = None,
    intended_use: Annotated[
        str | None, typer.Option("--intended-use", help="Set what the model is for (and not for).")
    ] = None,
    sensitive: Annotated[
        list[str] | None,
        typer.Option("--sensitive", help="Compare the groups of this column for fairness (repeat; recomputes)."),
    ] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Compute the card again.")] = False,
    sample: Annotated[
        int, typer.Option("--sample", help="Rows of the training data explanations and fairness use.", min=50)
    ] = 2_000,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the Markdown to this file.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """A model version's card: owner, intended use, training data, evaluation, explanations, fairness.

    Computed once and stored with the version (SHAP for tree and linear models, permutation importance
    otherwise; fairlearn for the groups of --sensitive columns); printed as Markdown.

    Examples:

      conveyor models card churn@champion --owner "risk team" --intended-use "Monthly retention offers"

      conveyor models card churn:3 --sensitive region -o card.md
    """
    out = Output(json_output)
    ws = open_workspace(ctx)
    if owner is not None or intended_use is not None:
        ws.cards.describe(ref, owner=owner, intended_use=intended_use)
    found = ws.cards.get(ref, sensitive=sensitive, refresh=refresh, sample=sample)
    text = found.to_markdown()
    if output is not None:
        output.write_text(text, encoding="utf-8")

    def human(console: Console) -> None:
        if output is not None:
            console.print(f"[green]✓[/] model card of {found.model} written to {output}")
        else:
            from rich.markdown import Markdown

            console.print(Markdown(text))

    out.emit(found.to_dict(), human)


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadInput(f"Tag {pair!r} must be KEY=VALUE, for example stage=production.", tag=pair)
        tags[key] = value
    return tags


def _fields(v: ModelVersion) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(v)
