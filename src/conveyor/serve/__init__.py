"""Serving: online endpoints, each deployment a model version in its own HTTP process.

Reached as ``ws.endpoints``. Later: OIP V2 and MLflow routes, traffic split and mirroring, adaptive
batching, auth, metrics, collection, scale to zero, batch scoring, Docker and Kubernetes export.
"""

from conveyor.serve._endpoints import Deployment, Endpoint, Endpoints

__all__ = ["Deployment", "Endpoint", "Endpoints"]
