"""``conveyor batch``: score a data version with a registered model, in parallel chunks, into a new version."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace

if TYPE_CHECKING:
    from conveyor.serve._batch import BatchProgress, BatchResult

app = typer.Typer(no_args_is_help=True)

#: Mirrors ``conveyor.serve._batch.DEFAULT_CHUNK_ROWS`` (not imported: the CLI loads services lazily).
_DEFAULT_CHUNK_ROWS = 250_000


@app.command("score")
def score(
    ctx: typer.Context,
    model: Annotated[str, typer.Option("--model", "-m", help="Model version: NAME, NAME:VERSION or NAME@ALIAS.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Data version to score: NAME, NAME@latest or NAME:N.")],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Data asset that gets the scored rows as a new version.")
    ],
    executor: Annotated[
        str,
        typer.Option(
            help="Where chunks run: local (a process per core), local:N, dask-local, or dask://HOST:PORT.",
        ),
    ] = "local",
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Rows per chunk (chunks follow the data's row groups).", min=1)
    ] = _DEFAULT_CHUNK_ROWS,
    error_threshold: Annotated[
        float,
        typer.Option(
            "--error-threshold",
            help="Largest share of rows the model may fail to score (0.01 = 1%); above it nothing is written.",
            min=0.0,
            max=1.0,
        ),
    ] = 0.01,
    retries: Annotated[int, typer.Option(help="Retries of a chunk whose worker failed.", min=0)] = 2,
    json_output: JsonFlag = False,
) -> None:
    """Score data version DATA with MODEL into a new version of OUTPUT: the input columns plus prediction
    (and probability columns for classifiers) and error.

    Rows the model cannot score get a null prediction and the reason in error; if their share exceeds
    --error-threshold the job fails and writes nothing. An interrupted job resumes: re-running the same
    command skips the chunks already scored.
    """
    out = Output(json_output)
    ws = open_workspace(ctx)
    with _Bar(out) as progress:
        result = ws.batch.score(
            model,
            data,
            output=output,
            executor=executor,
            chunk_rows=chunk_rows,
            error_threshold=error_threshold,
            retries=retries,
            progress=progress,
        )
    out.emit(_payload(result), lambda console: _summary(console, result))


def _payload(result: BatchResult) -> dict[str, Any]:
    return {
        "output": result.output,
        "model": result.model,
        "data": result.data,
        "rows": result.rows,
        "chunks": result.chunks,
        "skipped_chunks": result.skipped_chunks,
        "failed_rows": result.failed_rows,
        "seconds": round(result.seconds, 3),
        "rows_per_second": round(result.rows_per_second, 1),
        "executor": result.executor,
        "created": result.created,
        "errors": result.errors,
    }


def _summary(console: Console, result: BatchResult) -> None:
    made = "" if result.created else " (same content as the latest version; no new version)"
    console.print(
        f"[green]✓[/] scored {result.rows:,} rows of {result.data} with {result.model} into [bold]{result.output}"
        f"[/]{made} in {result.seconds:.1f} s ({result.rows_per_second:,.0f} rows/s, {result.chunks} chunks on "
        f"{result.executor})"
    )
    if result.skipped_chunks:
        console.print(f"resumed: {result.skipped_chunks} chunks were already scored by an interrupted run")
    if result.failed_rows:
        console.print(
            f"[yellow]{result.failed_rows:,} rows could not be scored[/] (prediction null, reason in the error "
            f"column): {'; '.join(result.errors)}"
        )


class _Bar:
    """A Rich progress bar of rows on stderr (only on a terminal); notes a resumed job either way."""

    def __init__(self, out: Output) -> None:
        self.out = out
        self.bar: Any = None
        self.task: Any = None
        self.noted = False

    def __enter__(self) -> Any:
        if self.out.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]scoring[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=self.out.err,
                transient=True,
            )
            self.bar.start()
        return self.update

    def update(self, progress: BatchProgress) -> None:
        if progress.skipped_chunks and not self.noted:
            self.noted = True
            self.out.note(
                f"resuming: {progress.skipped_chunks} of {progress.chunks} chunks were already scored; skipping them"
            )
        if self.bar is None:
            return
        if self.task is None:
            self.task = self.bar.add_task("", total=progress.rows)
        failed = f"{progress.failed_rows:,} failed" if progress.failed_rows else ""
        self.bar.update(
            self.task,
            completed=progress.rows_done,
            description=f"chunk {progress.chunks_done}/{progress.chunks} {failed}",
        )

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
