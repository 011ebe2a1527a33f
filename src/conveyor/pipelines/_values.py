"""Moving values between steps: what a step returns is stored, and what a step takes is loaded back.

Stored forms (JSON descriptors, kept on the step run):

- ``{"kind": "value", "value": ...}``: JSON values (numbers, text, lists, mappings, None);
- ``{"kind": "table", "digest", "rows", "bytes"}``: a DataFrame (pandas or Polars) or Arrow table, written as
  one Parquet part into the artifact store; the runner turns it into a data version once the step succeeded;
- ``{"kind": "data", "id", "ref"}``: a data version (returned by a step, or read as an input);
- ``{"kind": "model", "id", "ref"}``: a registered model version returned by a step;
- ``{"kind": "file", "digest", "name"}``: a local file (``pathlib.Path``) the step returned;
- ``{"kind": "object", "digest", "type"}``: anything else (a fitted model, say), stored with joblib and loaded
  only after its hash is verified.

A table input arrives as a pandas DataFrame unless the parameter is annotated as a Polars DataFrame, a
pyarrow Table or a :class:`~conveyor.data.DataVersion`.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ValidationFailed

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["load_value", "store_value"]


def store_value(ws: Workspace, value: Any) -> dict[str, Any]:  # noqa: PLR0911 - one return per kind
    """Store a step's result and return its descriptor."""
    from conveyor.data import DataVersion
    from conveyor.registry import ModelVersion

    if value is None or isinstance(value, bool | int | str):
        return {"kind": "value", "value": value}
    if isinstance(value, float):
        return {"kind": "value", "value": value if math.isfinite(value) else None}
    if isinstance(value, DataVersion):
        return {"kind": "data", "id": value.id, "ref": value.ref}
    if isinstance(value, ModelVersion):
        return {"kind": "model", "id": value.id, "ref": value.ref}
    table = _as_arrow(value)
    if table is not None:
        return _store_table(ws, table)
    if isinstance(value, Path):
        if not value.is_file():
            raise ValidationFailed(f"The step returned the path {str(value)!r}, which is not a file.")
        blob = ws.artifacts.put_file(value)
        return {"kind": "file", "digest": blob.digest, "name": value.name}
    if _json_container(value):
        return {"kind": "value", "value": value}
    import joblib

    buffer = io.BytesIO()
    joblib.dump(value, buffer)
    blob = ws.artifacts.put_bytes(buffer.getvalue())
    return {"kind": "object", "digest": blob.digest, "type": f"{type(value).__module__}.{type(value).__qualname__}"}


def table_form(annotation: Any) -> str | None:
    """How a parameter wants a table, from its annotation: ``DataVersion``, ``pyarrow``, ``polars``,
    ``polars-lazy`` or ``None`` (pandas). Worked out where the step is defined, so a function shipped by value
    (whose annotations may not resolve in the worker) still gets the right form."""
    name = getattr(annotation, "__name__", annotation if isinstance(annotation, str) else "")
    module = getattr(annotation, "__module__", "") or ""
    if name == "DataVersion":
        return "DataVersion"
    if name == "Table" and module.startswith("pyarrow"):
        return "pyarrow"
    if name == "DataFrame" and module.startswith("polars"):
        return "polars"
    if name == "LazyFrame" and module.startswith("polars"):
        return "polars-lazy"
    return None


def load_value(ws: Workspace, descriptor: dict[str, Any], form: str | None = None) -> Any:
    """The value a descriptor stands for, in the ``form`` the receiving parameter asks for (see
    :func:`table_form`)."""
    kind = descriptor["kind"]
    if kind == "value":
        return descriptor["value"]
    if kind == "object":
        import joblib

        return joblib.load(io.BytesIO(ws.artifacts.get_bytes(descriptor["digest"])))
    if kind == "file":
        folder = Path(tempfile.mkdtemp(prefix="conveyor-step-file-"))
        return ws.artifacts.get_file(descriptor["digest"], folder / descriptor["name"])
    if kind == "model":
        return ws.models.get_by_id(descriptor["id"])
    if kind == "data":
        version = _version_by_id(ws, descriptor["id"])
        return _table_as(ws, form, version=version)
    if kind == "table":
        return _table_as(ws, form, digests=[descriptor["digest"]])
    raise ValueError(f"unknown value kind {kind!r}")


def _table_as(ws: Workspace, form: str | None, *, version: Any = None, digests: list[str] | None = None) -> Any:
    if form == "DataVersion" and version is not None:
        return version
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = digests if digests is not None else [f["digest"] for f in version.files]
    tables = []
    for digest in parts:
        with ws.artifacts.local_file(digest) as path:
            tables.append(pq.read_table(path))
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if form == "pyarrow":
        return table
    if form in ("polars", "polars-lazy"):
        import polars as pl

        frame = pl.DataFrame(table)
        return frame.lazy() if form == "polars-lazy" else frame
    return table.to_pandas()


def _version_by_id(ws: Workspace, version_id: str) -> Any:
    import sqlalchemy as sa

    from conveyor.store._schema import DataAssetRow, DataVersionRow

    with ws.store.read() as session:
        name, number = session.execute(
            sa.select(DataAssetRow.name, DataVersionRow.version)
            .join(DataVersionRow, DataVersionRow.asset_id == DataAssetRow.id)
            .where(DataVersionRow.id == version_id)
        ).one()
    return ws.data.get(f"{name}:{number}")


def _as_arrow(value: Any) -> Any:
    module = type(value).__module__
    if module.startswith("pandas") and type(value).__name__ == "DataFrame":
        import pyarrow as pa

        return pa.Table.from_pandas(value, preserve_index=False)
    if module.startswith("polars") and type(value).__name__ in ("DataFrame", "LazyFrame"):
        frame = value.collect() if type(value).__name__ == "LazyFrame" else value
        return frame.to_arrow()
    if module.startswith("pyarrow") and type(value).__name__ == "Table":
        return value
    return None


def _store_table(ws: Workspace, table: Any) -> dict[str, Any]:
    import shutil

    from conveyor.data._formats import write_table

    scratch = ws.artifacts.scratch_dir()
    try:
        part = scratch / "part-00000.parquet"
        write_table(table, part)
        blob = ws.artifacts.adopt_file(part)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"kind": "table", "digest": blob.digest, "rows": table.num_rows, "bytes": blob.size}


def _json_container(value: Any) -> bool:
    if isinstance(value, bool | int | str) or value is None:
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_json_container(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_container(v) for k, v in value.items())
    return False
