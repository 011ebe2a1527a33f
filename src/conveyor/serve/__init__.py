"""Serving: online endpoints, batch scoring, and export for running elsewhere.

Reached as ``ws.endpoints`` and ``ws.batch``. The control plane (``_endpoints``) keeps what is served in the
tables; the serving processes (``_supervisor``, ``_app``, ``_runtime``, ``_protocols``) get it as an
:class:`EndpointSpec`, which is also what ``conveyor export docker|k8s`` bundles (``_targets``).
"""

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
