"""The studio: Conveyor's web interface, server-rendered pages over the services (see ``_app``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
    from conveyor.studio._app import add_studio

__all__ = ["add_studio"]

_HOME = {
    "add_studio": "_app",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
