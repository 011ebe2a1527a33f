"""``conveyor data stream``: JSON messages from MQTT or NATS JetStream into an asset, micro-batch by micro-batch.

SIGTERM and SIGINT (Ctrl-C) commit what is spooled and exit 0. The spool is opened and the broker's session
resumed before the workspace (the slow part of starting: 0.7 s to the broker instead of 2.1 s), so a restart
leaves the broker little to hold.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
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
    max_in_flight: Annotated[
        int | None,
        typer.Option(
            "--max-in-flight",
            help="Most messages the broker may have out to us unacknowledged (MQTT 5 Receive Maximum, JetStream "
            "max_ack_pending), 1 to 65535; default 500 for MQTT, 2000 for NATS. For MQTT keep it well under what "
            "the broker keeps for a session while the ingester is down (Mosquitto: max_queued_messages, 1000 by "
            "default); JetStream keeps every unacknowledged message.",
            show_default=False,
        ),
    ] = None,
    sequence_field: Annotated[
        str | None,
        typer.Option(
            "--sequence-field",
            help="An integer field that grows by one per message on each topic: gaps are recorded in the "
            "versions' notes and the summary.",
        ),
    ] = None,
    spool_dir: Annotated[
        Path | None,
        typer.Option(
            "--spool-dir",
            help="Where messages wait between the broker's acknowledgement and the commit (default: "
            "HOME/streams/NAME-...). Must outlive the process: a persistent disk.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Ingest a stream of JSON messages as appended versions: at least once from the broker, exactly once in the
    asset (acknowledged once in the local spool, committed from there), bad messages to NAME_deadletter with the
    reason and offset."""
    from conveyor.config import resolve_settings
    from conveyor.data._streaming import StreamIngester, spool_folder

    out = Output(json_output)
    live = _LiveLine(out.err) if out.interactive and not json_output else None
    state = ctx.find_root().obj
    if spool_dir is None:
        settings = resolve_settings(state.home, db_url=state.db_url, artifacts_url=state.artifacts_url)
        spool_dir = spool_folder(settings.home, name, source)
    ingester = StreamIngester(
        lambda: open_workspace(ctx),
        source,
        name=name,
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
        max_in_flight=max_in_flight,
        sequence_field=sequence_field,
        spool_dir=spool_dir,
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
        if stats.replayed:
            line += f", {stats.replayed:,} replayed from the spool"
        console.print(line + f"; stopped by {stats.stopped_by}.")
        if stats.sequence is not None:
            seq = stats.sequence
            if seq["gaps"]:
                console.print(
                    f"[yellow]![/] {seq['gaps']:,} gap{'s' if seq['gaps'] != 1 else ''} in {escape(seq['field'])} "
                    f"({seq['missing']:,} values missing); the versions' notes list them."
                )
            else:
                console.print(f"No gaps in {escape(seq['field'])}.")

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
