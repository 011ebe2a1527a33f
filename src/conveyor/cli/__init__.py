"""The ``conveyor`` command line (Typer): one module per command group, each a thin face over a service."""

from conveyor.cli._app import app, main

__all__ = ["app", "main"]
