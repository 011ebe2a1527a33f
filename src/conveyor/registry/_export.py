"""Exporting a model version to a folder: the MLflow model format, or ONNX.

A folder is written next to its destination under a temporary name and renamed into place when complete, so a
failed export leaves nothing behind. A non-empty destination is refused unless ``force`` is given.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from conveyor.errors import BadInput, Conflict
from conveyor.registry._formats import dump_model, python_version
from conveyor.registry._onnx import convert

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.registry._models import ModelVersion, Registry

__all__ = ["FORMATS", "ExportedModel", "OnnxModel", "export", "onnx_for"]

FORMATS = ("mlflow", "onnx")
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class OnnxModel:
    """A version's ONNX conversion, stored with it as ``model.onnx``, and what it was checked on."""

    ref: str
    digest: str
    size: int
    inputs: list[dict[str, str]]
    outputs: list[str]
    max_abs_diff: float
    rows_checked: int
    missing_text: str | None
    kind: str


@dataclass(frozen=True)
class ExportedModel:
    """A version written to a folder."""

    ref: str
    format: str
    path: str
    files: list[str]
    max_abs_diff: float | None = None
    rows_checked: int | None = None


def export(
    registry: Registry,
    version: ModelVersion,
    path: Path,
    *,
    format: str,
    force: bool,
    validation: pd.DataFrame | str | None,
) -> ExportedModel:
    if format not in FORMATS:
        raise BadInput(f"Unknown export format {format!r}; use one of: {', '.join(FORMATS)}.", format=format)
    destination = _check_destination(path, force, registry)
    onnx = onnx_for(registry, version, validation) if format == "onnx" else None
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.export-"))
    try:
        if onnx is not None:
            _write_onnx(registry, version, onnx, staging)
        else:
            _write_mlflow(registry, version, staging)
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        _replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportedModel(
        ref=version.ref,
        format=format,
        path=str(destination),
        files=files,
        max_abs_diff=None if onnx is None else onnx.max_abs_diff,
        rows_checked=None if onnx is None else onnx.rows_checked,
    )


def onnx_for(registry: Registry, version: ModelVersion, validation: pd.DataFrame | str | None) -> OnnxModel:
    """The version's ONNX conversion: the stored one when it has one (and no other rows are given), else a new
    conversion, checked and then stored with the version."""
    stored = version.files.get(ONNX_FILE)
    if stored is not None and validation is None:
        return _onnx_model(version.ref, stored)
    frame = registry._read_validation(validation, version)
    model = registry.load(version)
    result = convert(model, frame, version.ref)
    blob = registry._ws.artifacts.put_bytes(result.data)
    entry = {
        "digest": blob.digest,
        "size": blob.size,
        "inputs": result.inputs,
        "outputs": result.outputs,
        "kind": result.kind,
        "max_abs_diff": result.max_abs_diff,
        "rows_checked": result.rows,
        "missing_text": result.missing_text,
        "opset": result.opset,
        # Serving can then answer from the ONNX file alone, without loading (or importing) the model's library.
        "classes": _classes(model),
        "converted_at": datetime.now(UTC).isoformat(),
    }
    registry._add_file(version, ONNX_FILE, entry)
    return _onnx_model(version.ref, entry)


def _classes(model: Any) -> list[Any] | None:
    classes = getattr(model, "classes_", None)
    if classes is None:
        return None
    import numpy as np

    return [c.item() if isinstance(c, np.generic) else c for c in np.asarray(classes).tolist()]


def _onnx_model(ref: str, entry: dict[str, Any]) -> OnnxModel:
    return OnnxModel(
        ref=ref,
        digest=entry["digest"],
        size=entry["size"],
        inputs=list(entry["inputs"]),
        outputs=list(entry["outputs"]),
        max_abs_diff=float(entry["max_abs_diff"]),
        rows_checked=int(entry["rows_checked"]),
        missing_text=entry.get("missing_text"),
        kind=entry.get("kind", "classifier"),
    )


# -- folders -----------------------------------------------------------------------------------------


def _check_destination(path: Path, force: bool, registry: Registry) -> Path:
    destination = path.expanduser().absolute()
    if destination.exists() and not destination.is_dir():
        raise Conflict(f"{destination} is a file; export writes a folder. Choose another path.", path=str(destination))
    if destination.is_dir() and any(destination.iterdir()):
        if not force:
            raise Conflict(
                f"{destination} is not empty; export refuses to mix files into it. Choose a new folder, or pass "
                "--force to replace the folder and everything in it.",
                path=str(destination),
            )
        resolved = destination.resolve()
        protected = {Path("/"), Path.home().resolve(), registry._ws.settings.home.resolve()}
        if resolved in protected or Path.cwd().resolve().is_relative_to(resolved):
            raise Conflict(
                f"Refusing to replace {resolved} even with --force: it is the root, your home, the workspace or "
                "holds the current directory. Export into a new folder.",
                path=str(resolved),
            )
    destination.parent.mkdir(parents=True, exist_ok=True)
    return destination


def _replace(staging: Path, destination: Path) -> None:
    if not destination.exists():
        staging.replace(destination)
        return
    old = destination.with_name(f".{destination.name}.old-{uuid.uuid4().hex[:8]}")
    destination.replace(old)
    try:
        staging.replace(destination)
    except BaseException:
        old.replace(destination)
        raise
    shutil.rmtree(old, ignore_errors=True)


# -- ONNX --------------------------------------------------------------------------------------------


def _write_onnx(registry: Registry, version: ModelVersion, onnx: OnnxModel, folder: Path) -> None:
    (folder / ONNX_FILE).write_bytes(registry._verified(onnx.digest, f"{ONNX_FILE} of model {version.ref}"))
    info = {
        "model": version.ref,
        "model_version_id": version.id,
        "file": ONNX_FILE,
        "sha256": onnx.digest,
        "inputs": onnx.inputs,
        "outputs": onnx.outputs,
        "kind": onnx.kind,
        "missing_text": onnx.missing_text,
        "max_abs_diff": onnx.max_abs_diff,
        "rows_checked": onnx.rows_checked,
        "signature": version.signature,
    }
    (folder / "conveyor-onnx.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2) + b"\n")


# -- MLflow ------------------------------------------------------------------------------------------


def _write_mlflow(registry: Registry, version: ModelVersion, folder: Path) -> None:
    """An MLflow model folder: MLmodel (``python_function`` and ``sklearn`` flavors, signature), the model file
    (skops when possible, else a pickle), requirements.txt, python_env.yaml and conda.yaml."""
    if version.format == "skops":
        data, fmt, trusted = registry.file_bytes(version, version.model_file), "skops", version.trusted_types
    else:
        model = registry.load(version)
        serialized = dump_model(model)
        data, fmt, trusted = serialized.data, serialized.format, serialized.trusted_types
        if fmt == "joblib":
            import cloudpickle

            data, fmt = cloudpickle.dumps(model), "cloudpickle"
    model_file = "model.skops" if fmt == "skops" else "model.pkl"
    (folder / model_file).write_bytes(data)
    requirements = _mlflow_requirements(version, fmt)
    flavors: dict[str, Any] = {
        "python_function": {
            "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
            "loader_module": "mlflow.sklearn",
            "model_path": model_file,
            "predict_fn": "predict",
            "python_version": python_version(),
        },
        "sklearn": {
            "code": None,
            "pickled_model": model_file,
            "serialization_format": fmt,
            "sklearn_version": _version_of("scikit-learn"),
            "skops_trusted_types": trusted if fmt == "skops" else None,
        },
    }
    mlmodel: dict[str, Any] = {
        "flavors": flavors,
        "model_size_bytes": len(data),
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "metadata": {
            "conveyor_model": version.ref,
            "conveyor_model_version_id": version.id,
            "conveyor_run_id": version.run_id,
            "conveyor_sha256": version.digest,
        },
    }
    signature = _mlflow_signature(version.signature)
    if signature is not None:
        mlmodel["signature"] = signature
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel, sort_keys=False))
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    build = [f"pip=={_version_of('pip') or '24.0'}", "setuptools", "wheel"]
    python_env = {"python": python_version(), "build_dependencies": build, "dependencies": ["-r requirements.txt"]}
    (folder / "python_env.yaml").write_text(yaml.safe_dump(python_env, sort_keys=False))
    conda = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python_version()}", "pip", {"pip": requirements}],
    }
    (folder / "conda.yaml").write_text(yaml.safe_dump(conda, sort_keys=False))


def _mlflow_requirements(version: ModelVersion, fmt: str) -> list[str]:
    lines = []
    for line in version.requirements:
        package = line.split("==")[0]
        # conveyor-ml is needed only when the model holds Conveyor's own classes.
        if package == "conveyor-ml" and not any(t.startswith("conveyor.") for t in version.trusted_types):
            continue
        if package in ("skops", "joblib"):
            continue
        lines.append(line)
    if fmt == "skops":
        lines.append(f"skops=={_version_of('skops')}")
    elif fmt == "cloudpickle":
        lines.append(f"cloudpickle=={_version_of('cloudpickle')}")
    return list(dict.fromkeys(lines))


def _mlflow_signature(signature: dict[str, Any]) -> dict[str, Any] | None:
    inputs = signature.get("inputs") or []
    if not inputs:
        return None

    def columns(specs: list[dict[str, Any]]) -> str:
        return orjson.dumps(
            [{"type": c["type"], "name": c["name"], "required": bool(c.get("required", True))} for c in specs]
        ).decode()

    outputs = signature.get("outputs") or []
    return {"inputs": columns(inputs), "outputs": columns(outputs) if outputs else None, "params": None}


def _version_of(package: str) -> str | None:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(package)
    return None
