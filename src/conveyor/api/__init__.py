"""REST API (FastAPI): ``create_app(ws)`` builds the control plane served by ``conveyor server``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
    from conveyor.api._app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]

_HOME = {
    "API_PREFIX": "_app",
    "create_app": "_app",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
