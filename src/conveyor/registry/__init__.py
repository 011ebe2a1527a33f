"""Registry: models logged into runs, immutable versions with signature, pinned requirements, metrics and lineage,
aliases and tags, safe model files (skops; pickles only after hash verification), and exports to the MLflow
model format and ONNX.

Reached as ``ws.models``. Later: promotion gates and model cards.
"""

from conveyor.registry._export import ExportedModel, OnnxModel
from conveyor.registry._models import LoggedModel, ModelCorrupted, ModelVersion, RegisteredModel, Registry
from conveyor.registry._onnx import NotConvertible
from conveyor.registry._signature import infer_signature

__all__ = [
    "ExportedModel",
    "LoggedModel",
    "ModelCorrupted",
    "ModelVersion",
    "NotConvertible",
    "OnnxModel",
    "RegisteredModel",
    "Registry",
    "infer_signature",
]
