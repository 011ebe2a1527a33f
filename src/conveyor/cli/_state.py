"""What one ``conveyor`` invocation carries from its global options to its command: the workspace it names, opened
once, and who acts.

Kept apart from ``_app`` (which imports the top-level commands to register them) so that a command module can be
imported on its own without an import cycle.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import typer

from conveyor.cli._output import set_workspace

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["State", "act_as_local_user", "describe_workspace", "open_workspace"]

#: True when this process is one command and ends with it (``conveyor.cli.main()`` run as the program); false when
#: the command runs inside a process that goes on (tests, a program calling ``main(argv)``).
PROCESS_IS_COMMAND = False


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
    state: State = ctx.find_root().obj
    act_as_local_user(ctx)
    if state.workspace is None:
        with _loading():
            from conveyor.workspace import Workspace

            workspace = Workspace.open(
                state.home, db_url=state.db_url, artifacts_url=state.artifacts_url, create=create
            )
        state.use(workspace)
    assert state.workspace is not None
    return state.workspace


@contextlib.contextmanager
def _loading() -> Iterator[None]:
    """Load and open the workspace without the cycle collector walking what that makes, when the process is this
    command: the modules, SQLAlchemy's tables and mappers and the engine live until the process ends, and walking
    them, again and again as they are made, is a tenth of a ``runs list``. The collector pauses while they load,
    then leaves them out of its walks for good (``gc.freeze``) and runs as usual for what the command does next."""
    if not PROCESS_IS_COMMAND or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


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
