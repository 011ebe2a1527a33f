"""The ``conveyor`` command line (Typer): one module per command group, each a thin face over a service.

``conveyor --version`` is answered here, before Typer and the command tree load; ``app`` (the Typer app) loads
on first use (PEP 562).
"""

from __future__ import annotations

import gc
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.cli._app import app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``conveyor`` command (``argv`` None: the process's own arguments; the process ends with
    the command)."""
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        from conveyor._version import __version__

        print(f"conveyor {__version__}")
        sys.exit(0)
    from conveyor.cli import _app, _state

    if argv is not None:
        _app.main(argv)
        return
    _state.PROCESS_IS_COMMAND = True
    try:
        _app.main(None)
    finally:
        # The process ends now. Leave what is still alive to the operating system rather than to the interpreter's
        # last garbage collection, which walks every object SQLAlchemy and the command built (a tenth of a second
        # or more; the `cli-startup` benchmark). Files and the workspace are closed by then, and atexit handlers
        # (the tracking writer's) still run.
        gc.freeze()


def __getattr__(name: str) -> Any:
    if name == "app":
        from conveyor.cli._app import app

        return app
    raise AttributeError(f"module 'conveyor.cli' has no attribute {name!r}")
