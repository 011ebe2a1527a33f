"""Conveyor: a self-hosted platform for the whole machine-learning lifecycle.

Start with ``ws = conveyor.Workspace.open()``; then ``ws.data``, ``ws.runs``, ``ws.models``,
``ws.endpoints`` and ``ws.lineage`` reach the services.

``Workspace`` loads on first use (PEP 562): ``import conveyor`` alone, which every ``conveyor`` command does,
must not pull in SQLAlchemy and the schema (``conveyor --help`` answers in a tenth of a second).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor._version import __version__
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["ConveyorError", "Workspace", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Workspace":
        from conveyor.workspace import Workspace

        globals()["Workspace"] = Workspace
        return Workspace
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
