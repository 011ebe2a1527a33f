"""``conveyor scheduler``: fire pipeline schedules (cron and data triggers) without the REST API."""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli._output import JsonFlag, Output, fmt_time
from conveyor.cli._state import open_workspace

if TYPE_CHECKING:
    from rich.console import Console

    from conveyor.monitor import MonitorResult
    from conveyor.pipelines import Fired


def describe(fired: Fired) -> str:
    """One line about a firing, for the console."""
    reason = fired.reason
    if reason.get("kind") == "data":
        why = f"new version {reason.get('version')}"
    else:
        missed = f", missed since {reason['first_due']}" if reason.get("first_due") else ""
        why = f"cron '{reason.get('cron')}' due {reason.get('due')}{missed}"
    if fired.error is not None:
        return f"[red]✗[/] {fired.pipeline} ({why}): could not start: {fired.error}"
    return f"[green]▶[/] {fired.pipeline} ({why}): run {fired.run_id}"


def describe_result(result: MonitorResult) -> str:
    """One line about a scheduled monitor run, for the console."""
    style = {"ok": "green", "alert": "red", "empty": "yellow", "error": "red"}.get(result.status, "white")
    about = result.message or f"{result.rows:,} rows, no alert"
    return f"[{style}]●[/] monitor {result.monitor}: {result.status}: {about}"


def register(app: typer.Typer) -> None:
    @app.command("scheduler")
    def scheduler(
        ctx: typer.Context,
        interval: Annotated[
            float, typer.Option("--interval", help="Seconds between two checks of the schedules.", min=0.05)
        ] = 15.0,
        once: Annotated[bool, typer.Option("--once", help="Check the schedules once, fire what is due, exit.")] = False,
        json_output: JsonFlag = False,
    ) -> None:
        """Fire pipeline schedules (cron times, new data versions) and run scheduled monitors until Ctrl+C or
        SIGTERM.

        'conveyor server' runs the same scheduler; running both is safe (each schedule fires once, each monitor
        runs once per cron time).
        """
        from conveyor.pipelines import Scheduler

        out = Output(json_output)
        ws = open_workspace(ctx)
        runner = Scheduler(ws)
        monitors = ws.monitors.scheduler()
        if once:
            fired = runner.tick()
            ran = monitors.tick()

            def human(console: Console) -> None:
                for f in fired:
                    console.print(describe(f))
                for r in ran:
                    console.print(describe_result(r))
                if not fired and not ran:
                    console.print("Nothing was due.")

            out.emit({"fired": fired, "monitors": [r.to_dict() for r in ran]}, human)
            return
        count = len(ws.pipelines.schedules())
        out.note(
            f"Scheduler for [bold]{ws.settings.home}[/]: {count} schedule{'s' if count != 1 else ''}, checked every "
            f"{interval:g} s. Press Ctrl+C to stop."
        )

        def report(fired: Fired) -> None:
            if out.json_mode:
                out.emit(fired, lambda _: None)  # one JSON object per line, as they fire
            else:
                out.console.print(f"{fmt_time(datetime.now(UTC))} {describe(fired)}")

        def reported(result: MonitorResult) -> None:
            if out.json_mode:
                out.emit({"monitor": result.to_dict()}, lambda _: None)
            else:
                out.console.print(f"{fmt_time(datetime.now(UTC))} {describe_result(result)}")

        thread, stop = runner.start(interval, report)
        monitor_thread, monitor_stop = monitors.start(interval, reported)

        def on_sigterm(_signum: int, _frame: Any) -> None:
            stop.set()

        previous = signal.signal(signal.SIGTERM, on_sigterm)
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            stop.set()
            thread.join(30)
        finally:
            signal.signal(signal.SIGTERM, previous)
            monitor_stop.set()
            monitor_thread.join(30)
        out.note("Scheduler stopped.")
