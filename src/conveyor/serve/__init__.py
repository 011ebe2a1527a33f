"""Serving: online endpoints, batch scoring, and export for running elsewhere.

Reached as ``ws.endpoints`` and ``ws.batch``. The control plane (``_endpoints``) keeps what is served in the
tables; the serving processes (``_supervisor``, ``_app``, ``_runtime``, ``_protocols``) get it as an
:class:`EndpointSpec`, which is also what ``conveyor export docker|k8s`` bundles (``_targets``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
    from conveyor.serve._batch import BatchResult, BatchScoring, ScoringFailed
    from conveyor.serve._endpoints import Deployment, Endpoint, Endpoints
    from conveyor.serve._spec import EndpointSpec
    from conveyor.serve._targets import DeployTarget, ExportedEndpoint

__all__ = [
    "BatchResult",
    "BatchScoring",
    "DeployTarget",
    "Deployment",
    "Endpoint",
    "EndpointSpec",
    "Endpoints",
    "ExportedEndpoint",
    "ScoringFailed",
]

_HOME = {
    "BatchResult": "_batch",
    "BatchScoring": "_batch",
    "ScoringFailed": "_batch",
    "Deployment": "_endpoints",
    "Endpoint": "_endpoints",
    "Endpoints": "_endpoints",
    "EndpointSpec": "_spec",
    "DeployTarget": "_targets",
    "ExportedEndpoint": "_targets",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
