"""``conveyor data profile`` and ``conveyor data diff``: what a version holds, and what changed between two."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace
from conveyor.cli.data import app
from conveyor.data._profile import format_percent, format_statistic

RefArgument = Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@latest.")]
_SHIFTS_SHOWN = 10


@app.command("profile")
def profile(
    ctx: typer.Context,
    ref: RefArgument,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write an HTML report with charts to this file (works offline)."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Profile a data version: per column nulls, distinct values, min, max, mean, quantiles, top values."""
    from conveyor.data import profile_of, render_profile_html

    out = Output(json_output)
    data = open_workspace(ctx).data
    with out.err.status(f"profiling {ref}…") if out.interactive else contextlib.nullcontext():
        version, found = profile_of(data, ref)
    written = _write_atomically(html, render_profile_html(version.ref, found)) if html is not None else None
    payload: dict[str, Any] = {"ref": version.ref, "rows": found.get("rows"), "columns": found.get("columns")}
    if written is not None:
        payload["html"] = str(written)

    def human(console: Console) -> None:
        columns = _ordered(found)
        console.print(
            f"[bold]{escape(version.ref)}[/]  {format_statistic(found.get('rows'))} rows  {len(columns)} columns"
        )
        table = Table("column", "type", "nulls", "distinct", "min", "max", "mean", "top value", box=None)
        for name, c in columns:
            cells = [
                name,
                str(c.get("type", "")),
                format_percent(c.get("null_fraction")),
                ("≈" if c.get("distinct_approximate") else "") + format_statistic(c.get("distinct")),
                format_statistic(c.get("min")),
                format_statistic(c.get("max")),
                format_statistic(c.get("mean")),
                _top_value(c),
            ]
            table.add_row(*(escape(cell) for cell in cells))
        console.print(table)
        if written is not None:
            console.print(f"[green]✓[/] report written to {escape(str(written))}")

    out.emit(payload, human)


@app.command("diff")
def diff(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="The version to compare from: NAME:VERSION.")],
    b: Annotated[str, typer.Argument(help="The version to compare to: NAME:VERSION (or another asset's).")],
    json_output: JsonFlag = False,
) -> None:
    """Compare two data versions: schema changes, row counts, and the statistics that shifted most."""
    from conveyor.data import diff_versions

    out = Output(json_output)
    data = open_workspace(ctx).data
    with out.err.status(f"comparing {a} and {b}…") if out.interactive else contextlib.nullcontext():
        found = diff_versions(data, a, b)

    def human(console: Console) -> None:
        console.print(f"[bold]{escape(found['a'])}[/] → [bold]{escape(found['b'])}[/]")
        schema = found["schema"]
        changes = [f"  [green]+[/] {escape(c['name'])} ({escape(c['type'])})" for c in schema["added"]]
        changes += [f"  [red]-[/] {escape(c['name'])} ({escape(c['type'])})" for c in schema["removed"]]
        changes += [
            f"  [yellow]~[/] {escape(c['name'])}: {escape(c['a'])} → {escape(c['b'])}" for c in schema["type_changed"]
        ]
        console.print("schema: " + ("unchanged" if not changes else f"{len(changes)} change(s)"))
        for line in changes:
            console.print(line)
        rows = found["rows"]
        relative = "" if rows["relative"] is None else f", {100 * rows['relative']:+.1f}%"
        console.print(
            f"rows: {format_statistic(rows['a'])} → {format_statistic(rows['b'])} ({rows['change']:+,}{relative})"
        )
        shifts = found["shifts"]
        if not shifts:
            console.print("statistics: no shift in the columns both versions have")
            return
        console.print("biggest shifts:")
        table = Table("column", "score", "what changed", box=None)
        for shift in shifts[:_SHIFTS_SHOWN]:
            table.add_row(escape(shift["column"]), f"{shift['score']:.2f}", escape("; ".join(shift["reasons"])))
        console.print(table)
        if len(shifts) > _SHIFTS_SHOWN:
            console.print(f"… and {len(shifts) - _SHIFTS_SHOWN} more (all of them with --json)")

    out.emit(found, human)


def _write_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed into place (no half-written report)."""
    from conveyor.errors import BadInput

    path = path.expanduser().absolute()
    if path.is_dir():
        raise BadInput(f"{str(path)!r} is a folder; give the report a file name, such as profile.html.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        temporary.chmod(0o644)  # a report to share, not a secret (mkstemp makes 0600)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def _ordered(found: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    columns: dict[str, dict[str, Any]] = found.get("columns") or {}
    return sorted(columns.items(), key=lambda item: item[1].get("position", 0))


def _top_value(column: dict[str, Any]) -> str:
    top = column.get("top")
    if not top or not column.get("count"):
        return ""
    first = top[0]
    return f"{format_statistic(first['value'])} ({100 * first['count'] / column['count']:.1f}%)"
