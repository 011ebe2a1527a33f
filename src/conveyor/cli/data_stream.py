"""``conveyor data stream``: JSON messages from MQTT or NATS JetStream into an asset, micro-batch by micro-batch.

SIGTERM and SIGINT (Ctrl-C) commit what is buffered, acknowledge it to the broker and exit 0.
"""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from conveyor.cli._app import open_workspace
from conveyor.cli._output import JsonFlag, Output
from conveyor.cli.data import app

if TYPE_CHECKING:
    from conveyor.data import StreamStats


@app.command("stream")
def stream(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="mqtt://HOST:PORT/TOPIC/FILTER (mqtts:// for TLS) or nats://HOST:PORT/SUBJECT (a JetStream "
            "stream must capture the subject)."
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Asset name; dead letters go to NAME_deadletter.")],
    flush_rows: Annotated[
        int, typer.Option("--flush-rows", min=1, help="Commit a version when this many messages are buffered.")
    ] = 10_000,
    flush_seconds: Annotated[
        float,
        typer.Option("--flush-seconds", min=0.001, help="Commit a version when the oldest buffered one is this old."),
    ] = 5.0,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", min=0, help="Stop after taking this many messages.")
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option("--max-seconds", min=0, help="Stop after this many seconds.")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Ingest a stream of JSON messages as appended versions: at least once from the broker, exactly once in the
    asset (acknowledged only after the commit), bad messages to NAME_deadletter with the reason."""
    from conveyor.data import StreamIngester

    out = Output(json_output)
    ws = open_workspace(ctx)
    live = _LiveLine(out.err) if out.interactive and not json_output else None
    ingester = StreamIngester(
        ws,
        source,
        name=name,
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
        notify=live.note if live is not None else out.note,
        on_progress=live.update if live is not None else None,
    )

    def on_signal(signum: int, _frame: Any) -> None:
        ingester.stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        stats = ingester.run(max_messages=max_messages, max_seconds=max_seconds)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if live is not None:
            live.clear()

    def human(console: Console) -> None:
        line = (
            f"[green]✓[/] {stats.messages:,} messages in {stats.seconds:.1f} s: {stats.rows:,} rows in "
            f"{stats.versions} version{'s' if stats.versions != 1 else ''} of {escape(name)}"
        )
        if stats.last_version:
            line += f" (now {escape(stats.last_version)})"
        if stats.dead_lettered:
            line += f", [yellow]{stats.dead_lettered:,} dead-lettered[/] to {escape(ingester.deadletter_name)}"
        if stats.duplicates:
            line += f", {stats.duplicates:,} redeliveries dropped"
        console.print(line + f"; stopped by {stats.stopped_by}.")

    out.emit(stats.as_dict(), human)


class _LiveLine:
    """One line of counts on stderr, rewritten in place (notes are printed above it)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._shown = False

    def update(self, stats: StreamStats) -> None:
        rate = stats.messages / stats.seconds if stats.seconds > 0 else 0.0
        text = (
            f"{stats.messages:,} messages ({rate:,.0f}/s)  {stats.rows:,} rows  {stats.versions} versions  "
            f"{stats.dead_lettered:,} dead-lettered  {stats.duplicates:,} redeliveries dropped"
        )
        sys.stderr.write("\r\x1b[2K" + text)
        sys.stderr.flush()
        self._shown = True

    def note(self, message: str) -> None:
        self.clear()
        self._console.print(message)

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._shown = False
