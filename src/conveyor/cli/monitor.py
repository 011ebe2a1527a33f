"""``conveyor monitor …``: monitors of endpoints (create, run, list, show, history, alerts, feedback, delete) and
reference profiles of model versions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._output import JsonFlag, Output, YesFlag, fmt_time
from conveyor.cli._state import open_workspace
from conveyor.errors import BadInput

if TYPE_CHECKING:
    from conveyor.monitor import Monitor, MonitorResult

app = typer.Typer(no_args_is_help=True)

MonitorName = Annotated[str, typer.Argument(help="The monitor's name.", show_default=False)]
_STATUS_STYLE = {"ok": "green", "alert": "red", "empty": "yellow", "error": "red"}


@app.command("profile")
def profile(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model version: name, name:3 or name@alias.")],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Reference data (a data version or a CSV/Parquet file); default: the data the training run read.",
        ),
    ] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Compute it again even if the version has one.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Show a model version's reference profile (computed and stored the first time).

    Per input column and for its predictions on the training data: what drift compares new data with. Computed
    out of core, once.

    Then compare any data with it: conveyor drift model:churn@champion today.parquet

    Examples:

      conveyor monitor profile churn@champion

      conveyor monitor profile churn:3 --data churn:2 --json
    """
    out = Output(json_output)
    ws = open_workspace(ctx)
    result = ws.monitors.reference(model, data, refresh=refresh or data is not None)
    summary = result.summary()

    def human(console: Console) -> None:
        table = Table("column", "kind", "values", "nulls", "summary", box=None)
        for c in summary["columns"]:
            if c["kind"] is None:
                table.add_row(c["column"], "—", "—", "—", f"[dim]skipped: {c['skipped']}[/]")
                continue
            if c["kind"] == "numeric":
                about = f"{c['minimum']:.4g} … {c['maximum']:.4g}, mean {c['mean']:.4g}, std {c['std']:.4g}"
            else:
                about = f"{c['categories']:,} categories"
            table.add_row(c["column"], c["kind"], f"{c['count']:,}", f"{c['nulls']:,}", about)
        console.print(table)
        console.print(
            f"Reference profile of {model}: {summary['rows']:,} rows of {summary['source']}, computed "
            f"{summary['created_at'][:19].replace('T', ' ')} UTC in {summary['seconds']:.2f} s. "
            f"Compare data with it: conveyor drift model:{model} DATA"
        )

    out.emit({"model": model, **summary}, human)


def _pairs(values: list[str], what: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"{what} takes KEY=VALUE (e.g. {what} drift_share=0.3); got {text!r}.")
        found[key.strip()] = value.strip()
    return found


def _status(status: str | None) -> str:
    if status is None:
        return "[dim]never run[/]"
    return f"[{_STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _describe(monitor: Monitor) -> list[tuple[str, str]]:
    return [
        ("endpoint", monitor.endpoint),
        ("signals", ", ".join(monitor.signals)),
        ("window", monitor.window),
        ("reference", monitor.reference or "the reference profile of the model the endpoint serves"),
        (
            "schedule",
            f"{monitor.schedule} ({monitor.timezone}), next {fmt_time(monitor.next_at)}"
            if monitor.schedule
            else "none (conveyor monitor run)",
        ),
        ("alerts", ", ".join(monitor.to_dict()["alerts"]) or "none"),
        ("action", f"retrain:{monitor.action['pipeline']}" if monitor.action else "none"),
        ("thresholds", ", ".join(f"{k}={v}" for k, v in monitor.effective_thresholds().items())),
        ("last run", f"{fmt_time(monitor.last_run_at)} {_status(monitor.last_status)}"),
    ]


@app.command("create")
def create(
    ctx: typer.Context,
    name: MonitorName,
    endpoint: Annotated[str, typer.Option("--endpoint", "-e", help="The endpoint watched (it must collect requests).")],
    signals: Annotated[
        str, typer.Option("--signals", help="Comma-separated: drift, quality, prediction, performance.")
    ] = "drift,quality,prediction",
    window: Annotated[str, typer.Option("--window", help="How far back each run looks: 15m, 1h, 1d, ...")] = "1h",
    reference: Annotated[
        str | None,
        typer.Option("--reference", help="A data version to compare with (default: the served model's profile)."),
    ] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="Cron expression; 'conveyor server' runs the monitor then.")
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA timezone of --schedule.")] = "UTC",
    alert: Annotated[
        list[str] | None,
        typer.Option("--alert", help="log, webhook:URL or email:ADDRESS (repeat for several; default log)."),
    ] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="retrain:PIPELINE: run that registered pipeline on an alert.")
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="KEY=VALUE, e.g. drift_share=0.3, min_rows=100, metric=psi (repeat)."),
    ] = None,
    minimum: Annotated[
        list[str] | None, typer.Option("--min", help="Performance floor METRIC=VALUE, e.g. accuracy=0.85 (repeat).")
    ] = None,
    maximum: Annotated[
        list[str] | None, typer.Option("--max", help="Performance ceiling METRIC=VALUE, e.g. rmse=3.5 (repeat).")
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option("--promote-margin", help="How much the challenger must beat the champion by (default 0)."),
    ] = None,
    require_approval: Annotated[
        bool, typer.Option("--require-approval", help="Wait for 'conveyor monitor approve' before the canary.")
    ] = False,
    max_fairness: Annotated[
        float | None,
        typer.Option(
            "--max-fairness-difference",
            help="Gate: the challenger's demographic-parity and equalized-odds differences on held-out requests, "
            "per sensitive column its run declared (train --sensitive), may not exceed this (e.g. 0.1).",
        ),
    ] = None,
    canary: Annotated[
        int | None, typer.Option("--canary", help="The challenger's share of traffic while on trial (default 10).")
    ] = None,
    canary_window: Annotated[
        str | None, typer.Option("--canary-window", help="How long the canary runs before it is judged (default 60s).")
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Redefine an existing monitor (its history stays).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Watch an endpoint's collected requests for drift, data quality and performance.

    Drift and data quality against a reference, prediction drift, and performance once labels arrive (conveyor
    monitor feedback). Each run covers the last --window. With --action retrain:PIPELINE an alert retrains, and
    the challenger goes through gates and a canary to promotion.

    Examples:

      conveyor monitor create churn-watch --endpoint churn --window 1h --schedule "*/15 * * * *"

      conveyor monitor create churn-watch -e churn --signals drift,performance --min accuracy=0.85
      --alert webhook:https://hooks.example.com/T0 --action retrain:churn-train
    """
    out = Output(json_output)
    ws = open_workspace(ctx)
    thresholds: dict[str, Any] = _pairs(threshold or [], "--threshold")
    if minimum:
        thresholds["min"] = _pairs(minimum, "--min")
    if maximum:
        thresholds["max"] = _pairs(maximum, "--max")
    retrain: dict[str, Any] = {}
    if margin is not None:
        retrain["margin"] = margin
    if require_approval:
        retrain["require_approval"] = True
    if max_fairness is not None:
        retrain["max_fairness_difference"] = max_fairness
    if canary is not None:
        retrain["canary"] = canary
    if canary_window is not None:
        from conveyor.monitor import parse_window

        retrain["canary_seconds"] = parse_window(canary_window)
    made = ws.monitors.create(
        name,
        endpoint,
        signals=[s for s in signals.split(",") if s.strip()],
        window=window,
        reference=reference,
        schedule=schedule,
        timezone=timezone,
        alerts=alert or ["log"],
        action=action,
        thresholds=thresholds,
        retrain=retrain,
        replace=replace,
    )

    def human(console: Console) -> None:
        console.print(f"[green]✓[/] monitor {made.name} watches endpoint {made.endpoint}")
        for key, value in _describe(made)[1:-1]:
            console.print(f"  {key:<10} {value}")
        console.print(f"Run it now: conveyor monitor run {made.name}")

    out.emit(made.to_dict(), human)


@app.command("list")
def list_monitors(
    ctx: typer.Context,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", "-e", help="Only the monitors of this endpoint.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """The monitors, with their last run's status and next scheduled time."""
    out = Output(json_output)
    found = open_workspace(ctx).monitors.list(endpoint)

    def human(console: Console) -> None:
        if not found:
            console.print("No monitors yet. Make one: conveyor monitor create NAME --endpoint ENDPOINT")
            return
        table = Table(box=None)
        for header in ("name", "endpoint", "signals", "window", "schedule", "last run", "status", "next"):
            table.add_column(header, overflow="fold")
        for m in found:
            table.add_row(
                m.name, m.endpoint, ", ".join(m.signals), m.window, m.schedule or "—", fmt_time(m.last_run_at),
                _status(m.last_status), fmt_time(m.next_at),
            )  # fmt: skip
        console.print(table)

    out.emit({"monitors": [m.to_dict() for m in found]}, human)


@app.command("show")
def show(ctx: typer.Context, name: MonitorName, json_output: JsonFlag = False) -> None:
    """A monitor's definition and its last result."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    found = ws.monitors.get(name)
    last = ws.monitors.history(name, limit=1)

    def human(console: Console) -> None:
        console.print(f"[bold]{found.name}[/]")
        for key, value in _describe(found):
            console.print(f"  {key:<10} {value}")
        if last:
            _print_result(console, last[0])

    out.emit({**found.to_dict(), "last_result": last[0].to_dict() if last else None}, human)


def _about(signal: str, found: dict[str, Any]) -> str:
    """One line about a signal's outcome."""
    if signal == "drift":
        about = f"{found['share_drifted']:.0%} of columns drifted (alert at {found['drift_share']:.0%})"
        if found.get("drifted_columns"):
            about += ": " + ", ".join(found["drifted_columns"][:10])
        return about
    if signal == "performance":
        about = ", ".join(f"{k} {v:.4g}" for k, v in found.get("metrics", {}).items() if v is not None)
        return about + f" on {found.get('labelled', 0):,} labelled rows"
    if signal == "prediction":
        return f"{found.get('metric')} {found.get('value') or 0:.3g} (threshold {found.get('threshold')})"
    return "; ".join(found.get("problems", [])) or "no problems"


def _print_result(console: Console, result: MonitorResult) -> None:
    console.print(
        f"{_status(result.status)} window {fmt_time(result.window_start)} – {fmt_time(result.window_end)}: "
        f"{result.rows:,} rows, {result.seconds:.2f} s"
    )
    for signal, found in result.signals.items():
        if not isinstance(found, dict):
            continue
        if found.get("skipped"):
            console.print(f"  {signal:<11} [dim]skipped: {found['skipped']}[/]")
            continue
        mark = "[red]✗[/]" if found.get("alert") else "[green]✓[/]"
        console.print(f"  {mark} {signal:<11} {_about(signal, found)}")
    if result.status in ("empty", "error"):
        console.print(f"  {result.message}")
    if result.alert is not None:
        delivered = sum(1 for d in result.alert.deliveries if d["ok"])
        channels = len({(d["channel"], d["target"]) for d in result.alert.deliveries})
        console.print(f"  [red]alert[/] {result.alert.id}: delivered on {delivered} of {channels} channel(s)")
        for d in result.alert.deliveries:
            if not d["ok"]:
                console.print(f"    [dim]{d['channel']} {d['target']} attempt {d['attempt']}: {d['error']}[/]")
        if result.alert.action:
            _print_action(console, result.alert.action)


def _print_action(console: Console, action: dict[str, Any]) -> None:
    """The retraining an alert started, step by step."""
    what = action.get("error") or action.get("skipped") or f"run {action.get('run_id')}"
    console.print(f"  action retrain:{action.get('pipeline')}: {what}")
    for step in action.get("timeline", []):
        console.print(f"    {step['at'][11:19]} {step['stage']:<17} {step['message']}")


@app.command("run")
def run_monitor(
    ctx: typer.Context,
    name: MonitorName,
    fail_on_alert: Annotated[
        bool, typer.Option("--fail-on-alert", help="Exit 1 when the run raises an alert (for CI and cron).")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Run a monitor now over its last window (signals, stored result, alerts, action)."""
    out = Output(json_output)
    result = open_workspace(ctx).monitors.run(name)
    out.emit(result.to_dict(), lambda console: _print_result(console, result))
    if fail_on_alert and result.status == "alert":
        raise typer.Exit(1)


@app.command("history")
def history(
    ctx: typer.Context,
    name: MonitorName,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many results, newest first.", min=1)] = 20,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the results over time as charts (self-contained HTML).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """A monitor's results over time (one per run), newest first, with the alerts they raised."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    found = ws.monitors.history(name, limit=limit)
    if html is not None:
        from conveyor.monitor._report import render_history_html

        html.write_text(render_history_html(ws.monitors.get(name), found), encoding="utf-8")

    def human(console: Console) -> None:
        if not found:
            console.print(f"Monitor {name} has not run yet: conveyor monitor run {name}")
            return
        table = Table("window end", "rows", "status", "drift", "performance", "alert", "message", box=None)
        for r in found:
            drift = r.signals.get("drift", {})
            share = f"{drift['share_drifted']:.0%}" if "share_drifted" in drift else "—"
            metrics = r.signals.get("performance", {}).get("metrics", {})
            perf = ", ".join(f"{k} {v:.3g}" for k, v in list(metrics.items())[:2] if v is not None) or "—"
            alerted = ""
            if r.alert is not None:
                action = r.alert.action or {}
                alerted = f"yes, retrain {action['stage']}" if action.get("stage") else "yes"
            table.add_row(
                fmt_time(r.window_end), f"{r.rows:,}", _status(r.status), share, perf, alerted, r.message[:80],
            )  # fmt: skip
        console.print(table)
        if html is not None:
            console.print(f"Charts: {html}")

    out.emit({"monitor": name, "results": [r.to_dict() for r in found], "html": str(html) if html else None}, human)


@app.command("alerts")
def alerts(
    ctx: typer.Context,
    name: MonitorName,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many alerts, newest first.", min=1)] = 20,
    json_output: JsonFlag = False,
) -> None:
    """A monitor's alerts: why, each delivery attempt, and what the action did."""
    out = Output(json_output)
    found = open_workspace(ctx).monitors.alerts(name, limit=limit)

    def human(console: Console) -> None:
        if not found:
            console.print(f"Monitor {name} raised no alert yet.")
        for a in found:
            console.print(f"[red]{fmt_time(a.at)}[/] {a.id}: {a.message}")
            for d in a.deliveries:
                mark = "[green]✓[/]" if d["ok"] else "[red]✗[/]"
                why = "" if d["ok"] else f" {d['error']}"
                console.print(f"  {mark} {d['channel']} {d['target']} attempt {d['attempt']}{why}")
            if a.action:
                _print_action(console, a.action)

    out.emit({"monitor": name, "alerts": [a.to_dict() for a in found]}, human)


@app.command("feedback")
def feedback(
    ctx: typer.Context,
    name: MonitorName,
    data: Annotated[str, typer.Argument(help="Labels: a CSV/Parquet file or a data version.", show_default=False)],
    label: Annotated[
        str | None, typer.Option("--label", help="The label column (default: the only other one).")
    ] = None,
    id_column: Annotated[str, typer.Option("--id-column", help="The request id column.")] = "request_id",
    row_column: Annotated[
        str, typer.Option("--row-column", help="The row's index in its request (absent: 0, one row per request).")
    ] = "row",
    json_output: JsonFlag = False,
) -> None:
    """Send labels (ground truth) for the endpoint's requests, joined by request id and row.

    The endpoint answers each request with an x-request-id header (the caller's own, when it sent one). The
    performance signal and the retraining use the labels.

    Example: conveyor monitor feedback churn-watch labels.csv --label churned
    """
    out = Output(json_output)
    stored = open_workspace(ctx).monitors.feedback(name, data, label=label, id_column=id_column, row_column=row_column)

    def human(console: Console) -> None:
        console.print(
            f"[green]✓[/] {stored['rows']:,} labels stored in {stored['asset']}: {stored['matched']:,} match "
            f"collected requests, {stored['unmatched']:,} do not (yet)"
        )

    out.emit(stored, human)


@app.command("delete")
def delete(ctx: typer.Context, name: MonitorName, yes: YesFlag = False, json_output: JsonFlag = False) -> None:
    """Delete a monitor with its results and alerts (the collected requests and labels stay)."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    found = ws.monitors.get(name)
    out.confirm(f"Delete monitor {name} of endpoint {found.endpoint}, with its results and alerts?", yes)
    ws.monitors.delete(name)
    out.emit({"deleted": name}, lambda console: console.print(f"[green]✓[/] deleted monitor {name}"))


@app.command("advance")
def advance(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Move open promotions on now (retraining, gates, canary, verdict).

    The scheduler of 'conveyor server' does this at every check."""
    out = Output(json_output)
    changed = open_workspace(ctx).monitors.advance()

    def human(console: Console) -> None:
        if not changed:
            console.print("No promotion moved.")
        for p in changed:
            last = p.get("timeline", [{}])[-1]
            console.print(f"{p['monitor']} alert {p['alert_id']}: {p.get('stage')}: {last.get('message', '')}")

    out.emit({"changed": changed}, human)


@app.command("approve")
def approve(
    ctx: typer.Context,
    alert_id: Annotated[str, typer.Argument(help="The alert whose challenger waits for approval.", show_default=False)],
    json_output: JsonFlag = False,
) -> None:
    """Approve a challenger waiting for approval (--require-approval).

    Its canary starts at the next check (or 'conveyor monitor advance')."""
    out = Output(json_output)
    found = open_workspace(ctx).monitors.approve(alert_id)
    out.emit(found, lambda console: console.print(f"[green]✓[/] approved: {found.get('challenger')} goes to canary"))
