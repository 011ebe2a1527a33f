"""``conveyor apply -f FILE``: register what a YAML spec declares (pipelines, for now)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace


def register(app: typer.Typer) -> None:
    @app.command("apply")
    def apply(
        ctx: typer.Context,
        file: Annotated[Path, typer.Option("--file", "-f", help="A YAML spec (kind: pipeline).")],
        json_output: JsonFlag = False,
    ) -> None:
        """Check a YAML spec fully and register it (again: it replaces the previous definition).

        Mistakes are reported with the file, the line and the key, and a suggestion for a misspelt key.
        """
        out = Output(json_output)
        info = open_workspace(ctx).pipelines.apply(file)
        steps = len(info.definition["spec"]["steps"])
        out.emit(
            {"kind": "pipeline", "name": info.name, "steps": steps},
            lambda console: console.print(f"[green]✓[/] pipeline {info.name} ({steps} steps) registered from {file}"),
        )
