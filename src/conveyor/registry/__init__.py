"""Registry: models, immutable versions with signatures and pinned requirements, and aliases.

Reached as ``ws.models``. Later: promotion gates, model cards, MLflow and ONNX export.
"""

from conveyor.registry._models import ModelVersion, RegisteredModel, Registry
from conveyor.registry._signature import infer_signature

__all__ = ["ModelVersion", "RegisteredModel", "Registry", "infer_signature"]
