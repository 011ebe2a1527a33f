"""How commands speak: a readable summary on a terminal, or exactly one JSON object on stdout with --json.

Errors go to stderr as one line naming the problem and the fix; with --json, stdout also gets
``{"error": {"code", "message", "details"}}`` so a script always has one object to read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from conveyor._json import dumps

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["JsonFlag", "Output", "YesFlag", "current_output", "fmt_time", "set_workspace", "to_jsonable"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout (for scripts).")]
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


class Output:
    """The output channel of one command invocation."""

    def __init__(self, json_mode: bool) -> None:
        from rich.console import Console  # here, not at import: `conveyor --version` needs no Rich

        self.json_mode = json_mode
        self.console: Console = Console(highlight=False, soft_wrap=True)
        # Progress and notes: stderr, so stdout stays one JSON object in --json mode.
        self.err: Console = Console(stderr=True, highlight=False, soft_wrap=True)
        _current.set(self)

    @property
    def interactive(self) -> bool:
        return self.err.is_terminal

    def emit(self, payload: Any, human: Callable[[Console], None]) -> None:
        """Print the result: ``payload`` as JSON in --json mode, else ``human(console)``."""
        if self.json_mode:
            home = _workspace.get()
            if home is not None and isinstance(payload, dict) and "workspace" not in payload:
                payload = {**payload, "workspace": home}  # which workspace answered (objects only; last key)
            sys.stdout.buffer.write(dumps(payload) + b"\n")
            sys.stdout.flush()
        else:
            human(self.console)

    def confirm(self, question: str, yes: bool) -> None:
        """Ask before something that cannot be undone, when a person is at the terminal (never in --json mode
        or a script, where the command just goes ahead); ``--yes`` skips the question.

        Raises:
            typer.Exit: the person said no (exit status 1, nothing done).
        """
        if yes or self.json_mode or not (sys.stdin.isatty() and self.err.is_terminal):
            return
        if not typer.confirm(question, default=False, err=True):
            self.err.print("Nothing was deleted.")
            raise typer.Exit(1)

    def note(self, message: str) -> None:
        """A remark for the person at the terminal (stderr; never part of the JSON)."""
        self.err.print(message)


_current: ContextVar[Output | None] = ContextVar("conveyor_cli_output", default=None)
_workspace: ContextVar[str | None] = ContextVar("conveyor_cli_workspace", default=None)


def set_workspace(home: str) -> None:
    """Name the workspace this command opened in its JSON output (a ``workspace`` key in the object)."""
    _workspace.set(home)


def current_output() -> Output | None:
    """The output of the command being run (the error reporter uses it to know about --json)."""
    return _current.get()


def to_jsonable(value: Any) -> Any:
    """Round-trip through orjson so dataclasses, datetimes and numpy values become plain JSON types."""
    return orjson.loads(dumps(value))


def fmt_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
