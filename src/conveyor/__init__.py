"""Conveyor: a self-hosted platform for the whole machine-learning lifecycle.

Start with ``ws = conveyor.Workspace.open()``; then ``ws.data``, ``ws.runs``, ``ws.models``,
``ws.endpoints`` and ``ws.lineage`` reach the services.
"""

from conveyor._version import __version__
from conveyor.errors import ConveyorError
from conveyor.workspace import Workspace

__all__ = ["ConveyorError", "Workspace", "__version__"]
