"""REST API (FastAPI): ``create_app(ws)`` builds the control plane served by ``conveyor server``."""

from conveyor.api._app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
