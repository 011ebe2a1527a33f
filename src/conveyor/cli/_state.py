"""What one ``conveyor`` invocation carries from its global options to its command: the workspace it names, opened
once, and who acts.

Kept apart from ``_app`` (which imports the top-level commands to register them) so that a command module can be
imported on its own without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer

    from conveyor.workspace import Workspace

__all__ = ["State", "act_as_local_user", "open_workspace"]


@dataclass
class State:
    """Global options, and the workspace once a command opens it."""

    home: str | None = None
    db_url: str | None = None
    artifacts_url: str | None = None
    workspace: Workspace | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.workspace is not None:
            self.workspace.close()
            self.workspace = None


def open_workspace(ctx: typer.Context) -> Workspace:
    """The workspace the global options and environment name (opened once per invocation)."""
    from conveyor.workspace import Workspace

    state: State = ctx.find_root().obj
    act_as_local_user(ctx)
    if state.workspace is None:
        state.workspace = Workspace.open(state.home, db_url=state.db_url, artifacts_url=state.artifacts_url)
    return state.workspace


def act_as_local_user(ctx: typer.Context) -> None:
    """Record what this command changes as the OS user running it (the audit log's actor), doing the
    command (``conveyor endpoints deploy``)."""
    from conveyor.governance._context import local_principal, set_principal

    set_principal(local_principal("cli", action=ctx.command_path))
