"""The ``conveyor`` command line (Typer): one module per command group, each a thin face over a service.

``conveyor --version`` is answered here, before Typer and the command tree load; ``app`` (the Typer app) loads
on first use (PEP 562).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.cli._app import app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``conveyor`` command."""
    if (sys.argv[1:] if argv is None else argv) == ["--version"]:
        from conveyor._version import __version__

        print(f"conveyor {__version__}")
        sys.exit(0)
    from conveyor.cli import _app

    _app.main(argv)


def __getattr__(name: str) -> Any:
    if name == "app":
        from conveyor.cli._app import app

        return app
    raise AttributeError(f"module 'conveyor.cli' has no attribute {name!r}")
