"""Model signatures: the columns and types a model takes and returns (MLflow's column-based schema types)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["infer_signature", "signature_types"]

#: MLflow's column types, which exports keep as they are.
signature_types = ("boolean", "integer", "long", "float", "double", "string", "binary", "datetime")


def _column_type(dtype: Any, values: Any = None) -> str:
    import datetime as dt

    import pandas as pd

    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer" if getattr(dtype, "itemsize", 8) <= 4 else "long"
    if pd.api.types.is_float_dtype(dtype):
        return "float" if getattr(dtype, "itemsize", 8) <= 4 else "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if values is not None:
        present = values.dropna()
        if len(present) and all(isinstance(v, dt.date) for v in present.head(100)):
            return "datetime"
    return "string"


def infer_signature(inputs: pd.DataFrame, outputs: Any = None) -> dict[str, Any]:
    """A signature ``{"inputs": [...], "outputs": [...]}`` from example inputs and predictions.

    Each column is ``{"name", "type", "required"}``; a column is not required when the examples hold
    missing values in it (the model was trained to cope with them).
    """
    import numpy as np
    import pandas as pd

    columns = [
        {
            "name": str(name),
            "type": _column_type(dtype, inputs[name]),
            "required": not bool(inputs[name].isna().any()),
        }
        for name, dtype in inputs.dtypes.items()
    ]
    signature: dict[str, Any] = {"inputs": columns, "outputs": []}
    if outputs is not None:
        series = pd.Series(np.asarray(outputs).ravel())
        signature["outputs"] = [{"name": "prediction", "type": _column_type(series.dtype), "required": True}]
    return signature
