"""``conveyor runs``: tracked runs — list, search, show, compare, metric history, experiments."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._output import JsonFlag, Output, fmt_time
from conveyor.cli._state import open_workspace

if TYPE_CHECKING:
    from conveyor.tracking import Run

app = typer.Typer(no_args_is_help=True)

ExperimentOption = Annotated[
    list[str] | None,
    typer.Option("--experiment", "-e", help="Only runs of this experiment (repeat for several)."),
]


def _runs_table(
    console: Console,
    runs: list[Run],
    metric_keys: list[str] | None = None,
    children: dict[str, int] | None = None,
    parents: bool = False,
) -> None:
    """Runs as a table: the metrics asked for first, so a narrow terminal still shows them; the status is never
    cut, the name and the last column fold."""
    if not runs:
        console.print("No runs match.")
        return
    table = Table(box=None)
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    keys = metric_keys or []
    for key in keys:
        table.add_column(key, justify="right", no_wrap=True)
    table.add_column("experiment", overflow="fold")
    if parents:
        table.add_column("parent", overflow="fold")
    if children is not None:
        table.add_column("children", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True, min_width=len("finished"))
    table.add_column("started", overflow="fold")
    table.add_column("s", no_wrap=True)
    table.add_column("params" if keys else "metrics", overflow="fold")
    for r in runs:
        seconds = "" if r.seconds is None else f"{r.seconds:.1f}"
        extra = [f"{r.metrics[k]:.4g}" if k in r.metrics else "" for k in keys]
        rest = (
            ", ".join(f"{k}={v}" for k, v in sorted(r.params.items())[:4])
            if keys
            else ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items())[:3])
        )
        middle = [r.experiment]
        if parents:
            middle.append(r.parent_run_id or "")
        if children is not None:
            middle.append(str(children.get(r.id, "")) if children.get(r.id) else "")
        table.add_row(r.id, r.name, *extra, *middle, r.status, fmt_time(r.started_at), seconds, rest)
    console.print(table)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    experiment: ExperimentOption = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1, max=10_000)] = 20,
    everything: Annotated[
        bool, typer.Option("--all", "-a", help="Child runs too (AutoML trials, sweep trials); default: top-level runs.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """List the most recent runs, newest first: top-level runs with their number of child runs (--all for every
    run, with its parent)."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    page = ws.runs.search(
        None if everything else "attributes.parent_run_id is null", experiments=experiment, max_results=limit
    )
    children = ws.runs.children_counts([r.id for r in page.runs])

    def human(console: Console) -> None:
        if not page.runs:
            console.print("No runs yet. 'conveyor quickstart' makes one." if not experiment else "No runs match.")
            return
        _runs_table(console, page.runs, children=children, parents=everything)
        if page.next_page_token:
            console.print(f"[dim]Newest {len(page.runs)} shown; --limit N for more.[/]")

    out.emit(
        {
            "runs": [{**r.__dict__, "children": children.get(r.id, 0)} for r in page.runs],
            "next_page_token": page.next_page_token,
        },
        human,
    )


@app.command("search")
def search(
    ctx: typer.Context,
    filter_expression: Annotated[
        str,
        typer.Argument(
            metavar="FILTER",
            help="e.g. \"metrics.auc > 0.8 and params.learner = 'lgbm'\" (metrics., params., tags., attributes: "
            "status, name, experiment, started_at, ...; and/or/not, in (...), like, is null). '' for all.",
        ),
    ] = "",
    experiment: ExperimentOption = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", "-o", help="e.g. 'metrics.auc desc' (repeatable). Default: newest first."),
    ] = None,
    max_results: Annotated[int, typer.Option("--max-results", "-n", help="Runs per page.", min=1, max=10_000)] = 50,
    page_token: Annotated[
        str | None, typer.Option("--page-token", help="The next_page_token of the previous page.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Search runs with a filter expression and an ordering, one page at a time."""
    out = Output(json_output)
    page = open_workspace(ctx).runs.search(
        filter_expression,
        experiments=experiment,
        order_by=order_by,
        max_results=max_results,
        page_token=page_token,
    )
    keys = sorted({o.split()[0].partition(".")[2] for o in order_by or [] if o.startswith("metrics.")})

    def human(console: Console) -> None:
        _runs_table(console, page.runs, keys or sorted({k for r in page.runs for k in r.metrics})[:3])
        if page.next_page_token:
            console.print(f"more: --page-token {page.next_page_token}")

    out.emit({"runs": page.runs, "next_page_token": page.next_page_token}, human)


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    json_output: JsonFlag = False,
) -> None:
    """Show one run: status, parameters, metrics, tags, inputs, outputs and artifacts."""
    out = Output(json_output)
    r = open_workspace(ctx).runs.get(run_id)

    def human(console: Console) -> None:
        console.print(f"[bold]run {r.id}[/] {r.name}  experiment {r.experiment}  [bold]{r.status}[/]")
        seconds = "" if r.seconds is None else f" ({r.seconds:.1f}s)"
        console.print(f"started {fmt_time(r.started_at)} by {r.created_by}{seconds}")
        if r.parent_run_id:
            console.print(f"parent run {r.parent_run_id}")
        if r.status == "crashed":  # its process died: the error says up to which step values were stored
            console.print(f"[yellow]crashed:[/] {r.error}")
        elif r.error:
            console.print(f"[red]error:[/] {r.error}")
        for title, values in (("parameters", r.params), ("metrics", r.metrics), ("tags", r.tags)):
            if values:
                table = Table(title, "", box=None, title_justify="left")
                for key, value in sorted(values.items()):
                    table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
                console.print(table)
        if r.inputs:
            console.print("inputs: " + ", ".join(r.inputs))
        if r.outputs:
            console.print("outputs: " + ", ".join(r.outputs))
        for a in r.artifacts:
            console.print(f"artifact {a.path}  {a.size:,} bytes  {a.digest}")

    out.emit(r, human)


@app.command("compare")
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")],
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Also write an offline HTML page with charts (parameters vs metrics, histories)."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Compare runs side by side; differing parameters and metrics are marked."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    comparison = ws.runs.compare(run_ids)
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(ws.runs.compare_html(run_ids), encoding="utf-8")

    def human(console: Console) -> None:
        table = Table("", *[r.name or r.id for r in comparison.runs], box=None)
        for kind, values, differing in (
            ("params", comparison.params, comparison.differing_params),
            ("metrics", comparison.metrics, comparison.differing_metrics),
        ):
            for key, by_run in values.items():
                style = "bold yellow" if key in differing else ""
                cells = ["" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in by_run.values()]
                table.add_row(f"{kind}.{key}", *cells, style=style)
        console.print(table)
        if html is not None:
            console.print(f"charts: {html}")

    payload = {
        "runs": [r.id for r in comparison.runs],
        "params": comparison.params,
        "metrics": comparison.metrics,
        "differing_params": comparison.differing_params,
        "differing_metrics": comparison.differing_metrics,
        "html": None if html is None else str(html),
    }
    out.emit(payload, human)


@app.command("history")
def history(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    key: Annotated[str, typer.Argument(help="The metric.")],
    json_output: JsonFlag = False,
) -> None:
    """Every value a run logged for one metric, by step."""
    out = Output(json_output)
    points = open_workspace(ctx).runs.metric_history(run_id, key)

    def human(console: Console) -> None:
        table = Table("step", key, "time", box=None)
        for p in points:
            table.add_row(str(p.step), f"{p.value:.6g}", fmt_time(p.timestamp))
        console.print(table)

    out.emit({"run_id": run_id, "key": key, "history": points}, human)


@app.command("experiments")
def experiments(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List experiments with their number of runs."""
    out = Output(json_output)
    found = open_workspace(ctx).runs.experiments()

    def human(console: Console) -> None:
        if not found:
            console.print("No experiments yet.")
            return
        table = Table("experiment", "runs", "last run", box=None)
        for e in found:
            table.add_row(e.name, str(e.runs), fmt_time(e.last_run_at))
        console.print(table)

    out.emit({"experiments": found}, human)


@app.command("artifacts")
def artifacts(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    path: Annotated[
        str | None, typer.Argument(help="One artifact (e.g. evaluation.json); without it, list them all.")
    ] = None,
    download: Annotated[
        Path | None,
        typer.Option("--download", "-d", help="Write the artifact (or all of them) into this folder, paths kept."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """List a run's artifacts, print one, or download them.

    Examples:

      conveyor runs artifacts RUN                       # the list: path, size, type

      conveyor runs artifacts RUN evaluation.json       # a text artifact printed

      conveyor runs artifacts RUN --download ./out      # every artifact under ./out
    """
    from conveyor.errors import BadInput

    out = Output(json_output)
    ws = open_workspace(ctx)
    run = ws.runs.get(run_id)
    if path is not None and download is None:
        body = ws.runs.artifact_bytes(run.id, path)  # NotFound names the nearest artifact
        if json_output:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise BadInput(f"{path} is not text; write it to a folder with --download DIR.") from None
            out.emit({"run_id": run.id, "path": path, "text": text}, lambda c: None)
            return
        if not _printable(body):
            raise BadInput(f"{path} is binary ({len(body):,} bytes); write it to a folder with --download DIR.")
        typer.echo(body.decode("utf-8"), nl=not body.endswith(b"\n"))
        return
    chosen = run.artifacts if path is None else [a for a in run.artifacts if a.path == path]
    if path is not None and not chosen:
        ws.runs.artifact_bytes(run.id, path)  # raises NotFound with the nearest name
    written: list[str] = []
    if download is not None:
        folder = download.expanduser().resolve()
        for artifact in chosen:
            target = (folder / artifact.path).resolve()
            if not target.is_relative_to(folder):  # recorded paths are relative without '..'; checked again here
                raise BadInput(f"Artifact path {artifact.path!r} would leave {folder}; not written.")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            partial.write_bytes(ws.runs.artifact_bytes(run.id, artifact.path))
            partial.replace(target)  # nothing half-written under the artifact's name
            written.append(str(target))

    def human(console: Console) -> None:
        if download is not None:
            console.print(f"[green]✓[/] Wrote {len(written)} artifact(s) under {download}")
            return
        if not chosen:
            console.print("This run has no artifacts.")
            return
        table = Table("path", "size", "type", box=None)
        for a in chosen:
            table.add_row(a.path, f"{a.size:,}", a.media_type)
        console.print(table)
        console.print(f"[dim]Print one: conveyor runs artifacts {run.id} PATH · all: --download DIR[/]")

    out.emit({"run_id": run.id, "artifacts": chosen, "written": written}, human)


def _printable(body: bytes) -> bool:
    if b"\x00" in body[:8192]:
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@app.command("open")
def open_report(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    path: Annotated[
        str | None, typer.Argument(help="An HTML artifact; default: evaluation.html, else the run's first .html.")
    ] = None,
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open it in the web browser (else only print its path).")
    ] = True,
    json_output: JsonFlag = False,
) -> None:
    """Open a run's report (AutoML's evaluation.html: charts, metrics, importance) in the browser."""
    import tempfile

    from conveyor.errors import NotFound

    out = Output(json_output)
    ws = open_workspace(ctx)
    run = ws.runs.get(run_id)
    pages = [a.path for a in run.artifacts if a.path.endswith((".html", ".htm"))]
    chosen = path or ("evaluation.html" if "evaluation.html" in pages else (pages[0] if pages else None))
    if chosen is None:
        raise NotFound(
            f"Run {run.id} has no HTML report; `conveyor runs artifacts {run.id}` lists what it has "
            "(AutoML runs write evaluation.html)."
        )
    body = ws.runs.artifact_bytes(run.id, chosen)
    folder = Path(tempfile.gettempdir()) / f"conveyor-{run.id}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(chosen).name
    target.write_bytes(body)
    opened = bool(browser and not json_output and typer.launch(str(target)) == 0)
    out.emit(
        {"run_id": run.id, "path": chosen, "file": str(target), "opened": opened},
        lambda c: c.print(f"{'Opened' if opened else 'Saved'} {chosen} of run {run.id}: {target}"),
    )
