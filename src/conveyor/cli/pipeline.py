"""``conveyor pipeline``: run pipelines, resume them, look at their runs and step logs, schedule and trigger them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._output import JsonFlag, Output, fmt_time
from conveyor.cli._state import open_workspace
from conveyor.errors import BadInput, UserCodeError

app = typer.Typer(no_args_is_help=True)

_MARKS = {
    "done": "[green]✓[/]",
    "cached": "[cyan]↺[/]",
    "fail": "[red]✗[/]",
    "retry": "[yellow]↻[/]",
    "skip": "[dim]-[/]",
}


def parse_params(values: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value that reads as JSON (3, 0.5, true, [1, 2]) is taken as such, else as text.

    Raises:
        BadInput: an item without ``=``.
    """
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--param {item!r} must look like KEY=VALUE, e.g. --param min_tenure=3.")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def _progress(out: Output) -> Any:
    console = out.err if out.json_mode else out.console
    show = not out.json_mode or out.interactive

    def report(event: str, name: str, info: dict[str, Any]) -> None:
        if not show:
            return
        if event == "run":
            console.print(f"run {name} of {info['pipeline']} ({info['steps']} steps)")
        elif event == "done":
            console.print(f"{_MARKS['done']} {name}  {info['seconds']:.2f}s")
        elif event == "cached":
            console.print(f"{_MARKS['cached']} {name}  cached")
        elif event == "retry":
            failed = f"attempt {info['attempt']} failed ({info['error']})"
            console.print(f"{_MARKS['retry']} {name}  {failed}; again in {info['delay']:.1f}s")
        elif event == "fail":
            console.print(f"{_MARKS['fail']} {name}  {info['error']}")
        elif event == "skip":
            console.print(f"{_MARKS['skip']} {name}  skipped")

    return report


def _show_run(console: Console, run: Any) -> None:
    seconds = "" if run.seconds is None else f" in {run.seconds:.2f}s"
    console.print(
        f"[bold]run {run.id}[/]  pipeline {run.pipeline}  [bold]{run.status}[/]{seconds}  executor {run.executor}"
    )
    if run.params:
        console.print("params: " + ", ".join(f"{k}={v!r}" for k, v in run.params.items()))
    table = Table("step", "status", "attempts", "seconds", "output / error", box=None)
    for s in run.steps:
        output = s.error or _describe(s.outputs)
        table.add_row(s.name, s.status, str(s.attempts), "" if s.seconds is None else f"{s.seconds:.2f}", output)
    console.print(table)
    if run.error:
        console.print(f"[red]{run.error}[/]")
        failed = [s.name for s in run.steps if s.status == "failed"]
        if failed:
            console.print(f"See its output and traceback: conveyor pipeline logs {run.id} {failed[0]}")


def _describe(outputs: dict[str, Any]) -> str:
    kind = outputs.get("kind")
    if kind in ("data", "model"):
        return f"{kind} {outputs['ref']}"
    if kind == "value":
        return repr(outputs["value"])[:60]
    if kind in ("object", "file"):
        return f"{kind} {outputs.get('type') or outputs.get('name')}"
    return ""


def _finish(out: Output, run: Any) -> None:
    out.emit(run, lambda console: _show_run(console, run))
    if run.status != "succeeded":
        raise UserCodeError(run.error or f"Pipeline run {run.id} {run.status}.", run_id=run.id)


@app.command("run")
def run(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="A registered pipeline's name, MODULE:ATTRIBUTE, or a YAML file.")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="Parameter KEY=VALUE (repeatable).")] = [],  # noqa: B006
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="local, local:N, dask-local or dask://HOST:PORT.")
    ] = "local",
    force: Annotated[
        bool, typer.Option("--force", help="Run every step, even those whose outputs are cached.")
    ] = False,
    trigger_json: Annotated[
        str | None, typer.Option("--trigger-json", hidden=True, help="What started the run (a JSON object).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Run a pipeline: independent steps in parallel, cached steps reused, each step's state recorded."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    result = ws.pipelines.run(
        target,
        params=parse_params(param),
        executor=executor,
        force=force,
        trigger=_parse_trigger(trigger_json),
        progress=_progress(out),
    )
    _finish(out, result)


def _parse_trigger(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"--trigger-json is not JSON ({exc}).") from exc
    if not isinstance(value, dict):
        raise BadInput("--trigger-json must be a JSON object.")
    return value


@app.command("resume")
def resume(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to finish.")],
    executor: Annotated[
        str, typer.Option("--executor", "-e", help="local, local:N, dask-local or dask://HOST:PORT.")
    ] = "local",
    json_output: JsonFlag = False,
) -> None:
    """Finish a failed or interrupted run: succeeded steps keep their outputs, the rest run again."""
    out = Output(json_output)
    result = open_workspace(ctx).pipelines.resume(run_id, executor=executor, progress=_progress(out))
    _finish(out, result)


@app.command("runs")
def runs(
    ctx: typer.Context,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Only this pipeline's runs.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1, max=10_000)] = 20,
    json_output: JsonFlag = False,
) -> None:
    """List pipeline runs, newest first."""
    out = Output(json_output)
    found = open_workspace(ctx).pipelines.runs(pipeline=pipeline, limit=limit)

    def human(console: Console) -> None:
        if not found:
            console.print("No pipeline runs yet. Start one with: conveyor pipeline run NAME")
            return
        table = Table(box=None)
        for column in ("id", "pipeline", "status", "started", "seconds", "steps"):
            table.add_column(column, no_wrap=column != "steps")
        for r in found:
            counts: dict[str, int] = {}
            for s in r.steps:
                counts[s.status] = counts.get(s.status, 0) + 1
            steps = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
            seconds = "" if r.seconds is None else f"{r.seconds:.2f}"
            table.add_row(r.id, r.pipeline, r.status, fmt_time(r.started_at), seconds, steps)
        console.print(table)

    out.emit({"runs": found}, human)


@app.command("show")
def show(
    ctx: typer.Context, run_id: Annotated[str, typer.Argument(help="The run's id.")], json_output: JsonFlag = False
) -> None:
    """Show a run: each step's status, attempts, time, output or error."""
    out = Output(json_output)
    found = open_workspace(ctx).pipelines.get_run(run_id)
    out.emit(found, lambda console: _show_run(console, found))


@app.command("logs")
def logs(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run's id.")],
    step: Annotated[str, typer.Argument(help="The step's name.")],
    json_output: JsonFlag = False,
) -> None:
    """Print what a step wrote to stdout and stderr (and its traceback, if it failed)."""
    out = Output(json_output)
    text = open_workspace(ctx).pipelines.logs(run_id, step)
    out.emit({"run": run_id, "step": step, "logs": text}, lambda console: console.out(text or "(no output)"))


@app.command("list")
def list_pipelines(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List registered pipelines."""
    out = Output(json_output)
    found = open_workspace(ctx).pipelines.list()

    def human(console: Console) -> None:
        if not found:
            console.print("No pipelines registered. Register one with: conveyor apply -f pipeline.yaml")
            return
        table = Table("name", "kind", "updated", "description", box=None)
        for p in found:
            table.add_row(
                p.name, p.kind, fmt_time(p.updated_at), p.description.splitlines()[0] if p.description else ""
            )
        console.print(table)

    out.emit({"pipelines": found}, human)


@app.command("register")
def register(
    ctx: typer.Context,
    reference: Annotated[str, typer.Argument(help="MODULE:ATTRIBUTE of a @pipeline.")],
    json_output: JsonFlag = False,
) -> None:
    """Register a Python pipeline by import path, so it can be run and scheduled by name."""
    out = Output(json_output)
    info = open_workspace(ctx).pipelines.register(reference)
    out.emit(info, lambda console: console.print(f"[green]✓[/] pipeline {info.name} → {reference}"))


# -- schedules and triggers ---------------------------------------------------------------------------------


def _when(s: Any) -> str:
    if s.kind == "cron":
        return f"cron '{s.cron}' ({s.timezone})"
    return f"each new version of {s.asset}"


@app.command("schedule")
def schedule(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registered pipeline's name.")],
    cron: Annotated[
        str | None,
        typer.Option("--cron", help="When to run, five cron fields: '0 * * * *' (hourly), '30 6 * * 1-5', @daily."),
    ] = None,
    timezone: Annotated[
        str, typer.Option("--timezone", help="IANA timezone the cron times are read in, e.g. Europe/Paris.")
    ] = "UTC",
    on_data: Annotated[
        str | None, typer.Option("--on-data", help="Run on each new version of this data asset instead.")
    ] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="Parameter KEY=VALUE (repeatable).")] = [],  # noqa: B006
    json_output: JsonFlag = False,
) -> None:
    """Run a registered pipeline on a cron schedule (--cron) or on each new version of a data asset (--on-data).

    Schedules fire while 'conveyor server' or 'conveyor scheduler' runs; missed cron times give one run, not many.
    """
    out = Output(json_output)
    made = open_workspace(ctx).pipelines.schedule(
        name, cron=cron, timezone=timezone, on_data=on_data, params=parse_params(param)
    )

    def human(console: Console) -> None:
        nxt = f"; next run {fmt_time(made.next_at)}" if made.next_at else ""
        console.print(f"[green]✓[/] schedule {made.id}: {made.pipeline} runs on {_when(made)}{nxt}")
        console.print("Schedules fire while 'conveyor server' or 'conveyor scheduler' runs.")

    out.emit(made, human)


@app.command("unschedule")
def unschedule(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The pipeline whose schedules to remove.")],
    schedule_id: Annotated[str | None, typer.Option("--id", help="Remove only this schedule.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Remove a pipeline's schedules (all of them, or the one --id names)."""
    out = Output(json_output)
    removed = open_workspace(ctx).pipelines.unschedule(name, schedule_id)

    def human(console: Console) -> None:
        for s in removed:
            console.print(f"[green]✓[/] removed schedule {s.id}: {s.pipeline} on {_when(s)}")

    out.emit({"removed": removed}, human)


@app.command("schedules")
def schedules(
    ctx: typer.Context,
    pipeline: Annotated[str | None, typer.Option("--pipeline", help="Only this pipeline's schedules.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """List schedules: what runs when, when each last fired and fires next."""
    out = Output(json_output)
    found = open_workspace(ctx).pipelines.schedules(pipeline)

    def human(console: Console) -> None:
        if not found:
            console.print("No schedules. Add one with: conveyor pipeline schedule NAME --cron '0 * * * *'")
            return
        table = Table(box=None)
        for column in ("id", "pipeline", "when", "params", "last fired", "next"):
            table.add_column(column, no_wrap=column != "params")
        for s in found:
            params = ", ".join(f"{k}={v!r}" for k, v in s.params.items())
            table.add_row(s.id, s.pipeline, _when(s), params, fmt_time(s.last_fired_at), fmt_time(s.next_at))
        console.print(table)

    out.emit({"schedules": found}, human)


@app.command("trigger")
def trigger(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A registered pipeline's name.")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="Parameter KEY=VALUE (repeatable).")] = [],  # noqa: B006
    reason: Annotated[str, typer.Option("--reason", help="A note recorded as the run's trigger.")] = "",
    wait: Annotated[bool, typer.Option("--wait", help="Run here and wait for the end (exit 1 if it fails).")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Start a run of a registered pipeline in the background (as the scheduler and alerts do) and print its id."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    why: dict[str, Any] = {"kind": "manual", "by": ws.actor}
    if reason:
        why["note"] = reason
    run_id = ws.pipelines.trigger(name, reason=why, params=parse_params(param), wait=wait)
    if wait:
        _finish(out, ws.pipelines.get_run(run_id))
        return
    out.emit(
        {"run_id": run_id, "pipeline": name},
        lambda console: console.print(
            f"[green]✓[/] started run {run_id} of {name}; follow it with: conveyor pipeline show {run_id}"
        ),
    )
