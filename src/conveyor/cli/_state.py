"""What one ``conveyor`` invocation carries from its global options to its command: the workspace it names, opened
once, and who acts.

Kept apart from ``_app`` (which imports the top-level commands to register them) so that a command module can be
imported on its own without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

from conveyor.cli._output import set_workspace

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["State", "act_as_local_user", "describe_workspace", "open_workspace"]


@dataclass
class State:
    """Global options, and the workspace once a command opens it."""

    home: str | None = None
    db_url: str | None = None
    artifacts_url: str | None = None
    verbose: bool = False
    workspace: Workspace | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.workspace is not None:
            self.workspace.close()
            self.workspace = None

    def use(self, workspace: Workspace) -> Workspace:
        """Keep ``workspace`` as this invocation's: JSON objects name it, and ``--verbose`` says it on stderr."""
        self.workspace = workspace
        set_workspace(str(workspace.settings.home))
        if self.verbose:
            typer.echo(describe_workspace(workspace), err=True)
        return workspace


def open_workspace(ctx: typer.Context, *, create: bool = False) -> Workspace:
    """The workspace the global options and environment name (opened once per invocation).

    Only ``init`` and ``quickstart`` may create one (``create=True``); any other command on a folder that holds
    no workspace fails (exit 2) naming where it looked and the ``conveyor init`` that would make one.

    Raises:
        NotFound: there is no workspace where the options, the environment or the defaults point.
    """
    from conveyor.workspace import Workspace

    state: State = ctx.find_root().obj
    act_as_local_user(ctx)
    if state.workspace is None:
        state.use(Workspace.open(state.home, db_url=state.db_url, artifacts_url=state.artifacts_url, create=create))
    assert state.workspace is not None
    return state.workspace


def describe_workspace(workspace: Workspace) -> str:
    """One line for ``--verbose``: which workspace, found how, and where it keeps things."""
    from conveyor.store import mask_url

    settings = workspace.settings
    how = {
        "flag": "--home",
        "env": "CONVEYOR_HOME",
        "discovered": "the nearest .conveyor/ above this folder",
        "default": "the default",
    }.get(settings.origin.get("home", ""), settings.origin.get("home", ""))
    return (
        f"workspace: {settings.home} (from {how}); metadata: {mask_url(settings.db_url)}; "
        f"artifacts: {settings.artifacts_url}"
    )


def act_as_local_user(ctx: typer.Context) -> None:
    """Record what this command changes as the OS user running it (the audit log's actor), doing the
    command (``conveyor endpoints deploy``)."""
    from conveyor.governance._context import local_principal, set_principal

    set_principal(local_principal("cli", action=ctx.command_path))
