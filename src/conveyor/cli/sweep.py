"""``conveyor sweep -f sweep.yaml``: the user's training function or script over a search space, tracked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.train import SweepTrial

_STYLE = {"finished": "green", "pruned": "cyan", "failed": "red", "killed": "yellow"}


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep(
        ctx: typer.Context,
        file: Annotated[Path, typer.Option("--file", "-f", help="The sweep file (YAML): see docs/training.md.")],
        max_trials: Annotated[
            int | None, typer.Option("--max-trials", min=1, help="Override limits.max_trials.")
        ] = None,
        concurrency: Annotated[
            int | None, typer.Option("--concurrency", min=1, help="Override limits.concurrency (trial processes).")
        ] = None,
        timeout: Annotated[
            float | None, typer.Option("--timeout", min=0.001, help="Override limits.timeout (seconds).")
        ] = None,
        executor: Annotated[
            str | None,
            typer.Option("--executor", help="Where trials run: local (processes), dask-local or dask://HOST:PORT."),
        ] = None,
        json_output: JsonFlag = False,
    ) -> None:
        """Run a sweep: every trial in its own process and a child run; early termination stops the weak ones."""
        from conveyor.train import load_sweep

        out = Output(json_output)
        spec = load_sweep(file)
        ws = open_workspace(ctx)

        def progress(trial: SweepTrial) -> None:
            if not out.json_mode:
                value = "" if trial.value is None else f" {spec.metric}={trial.value:.6g}"
                why = f" ({trial.error})" if trial.error else ""
                out.note(f"trial {trial.number} {trial.state}{value} in {trial.seconds:.1f}s {trial.params}{why}")

        result = ws.train.sweep(
            spec,
            max_trials=max_trials,
            concurrency=concurrency,
            timeout=timeout,
            executor=executor,
            on_trial=progress,
        )

        def human(console: Console) -> None:
            from rich.table import Table

            table = Table("trial", "state", spec.metric, "seconds", "params", box=None)
            for t in result.trials:
                table.add_row(
                    str(t.number),
                    f"[{_STYLE.get(t.state, '')}]{t.state}[/]",
                    "" if t.value is None else f"{t.value:.6g}",
                    f"{t.seconds:.1f}",
                    ", ".join(f"{k}={v}" for k, v in t.params.items()),
                )
            console.print(table)
            if result.best is not None:
                console.print(
                    f"best: trial {result.best.number}, {spec.metric} {result.best.value:.6g} "
                    f"({spec.goal}) {result.best.params}; sweep run {result.run_id}"
                )

        payload = {
            "run_id": result.run_id,
            "experiment": result.experiment,
            "metric": result.metric,
            "goal": result.goal,
            "best": result.best,
            "trials": len(result.trials),
            "pruned": sum(t.state == "pruned" for t in result.trials),
            "failed": sum(t.state == "failed" for t in result.trials),
            "seconds": round(result.seconds, 3),
            "all_trials": result.trials,
        }
        out.emit(payload, human)
