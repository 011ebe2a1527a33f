"""The studio: Conveyor's web interface, server-rendered pages over the services (see ``_app``)."""

from conveyor.studio._app import add_studio

__all__ = ["add_studio"]
