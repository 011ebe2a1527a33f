"""Registry: models logged into runs, immutable versions with signature, pinned requirements, metrics and lineage,
aliases and tags, safe model files (skops; pickles only after hash verification), and exports to the MLflow
model format and ONNX.

Reached as ``ws.models``. Later: promotion gates and model cards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
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

_HOME = {
    "ExportedModel": "_export",
    "OnnxModel": "_export",
    "LoggedModel": "_models",
    "ModelCorrupted": "_models",
    "ModelVersion": "_models",
    "RegisteredModel": "_models",
    "Registry": "_models",
    "NotConvertible": "_onnx",
    "infer_signature": "_signature",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
