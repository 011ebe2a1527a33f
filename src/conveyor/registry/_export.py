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
from conveyor.registry._formats import python_version
from conveyor.registry._onnx import convert
from conveyor.registry._portable import bundle_code, make_portable, pin, user_modules_missing, write_runtime

if TYPE_CHECKING:
    from collections.abc import Sequence

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
    code: Sequence[str | Path] = (),
) -> ExportedModel:
    if format not in FORMATS:
        raise BadInput(f"Unknown export format {format!r}; use one of: {', '.join(FORMATS)}.", format=format)
    code_paths = _check_code(code, format)
    destination = _check_destination(path, force, registry)
    onnx = onnx_for(registry, version, validation) if format == "onnx" else None
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.export-"))
    try:
        if onnx is not None:
            _write_onnx(registry, version, onnx, staging)
        else:
            _write_mlflow(registry, version, staging, code_paths)
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


def _check_code(code: Sequence[str | Path], format: str) -> list[Path]:
    paths = [Path(c).expanduser().absolute() for c in code]
    if paths and format != "mlflow":
        raise BadInput(
            f"--code bundles Python code into an MLflow export; --format {format} takes none.", format=format
        )
    for path in paths:
        if not path.exists():
            raise BadInput(
                f"--code {path} does not exist; pass the .py file or the package folder the model's classes live in.",
                path=str(path),
            )
    return paths


def _conveyor_free(version: ModelVersion) -> bool:
    """A skops file that holds only types of public packages: exported as it is."""
    return version.format == "skops" and not any(t.startswith("conveyor.") for t in version.trusted_types)


def _write_mlflow(registry: Registry, version: ModelVersion, folder: Path, code_paths: list[Path]) -> None:
    """An MLflow model folder: MLmodel (``python_function`` and ``sklearn`` flavors, signature), the model file,
    requirements.txt, python_env.yaml and conda.yaml, and ``code/`` when the model needs code no package on the
    public index provides (Conveyor's own classes, the user's ``--code``).

    A skops file of public types is copied as it is; any other model is pickled (cloudpickle) with its
    references to Conveyor's modules pointing into the runtime bundled under ``code/``.
    """
    code_dir = folder / "code"
    roots: set[str] = set()
    if _conveyor_free(version) and not code_paths:
        data, fmt, trusted = registry.file_bytes(version, version.model_file), "skops", version.trusted_types
    else:
        model = _load_for_export(registry, version)
        portable = make_portable(model, f"Model {version.ref}")
        if code_paths:
            bundle_code(code_paths, code_dir)
        missing = user_modules_missing(portable, code_dir if code_paths else None)
        if missing:
            raise BadInput(_missing_code_message(version.ref, missing, bool(code_paths)), modules=sorted(missing))
        write_runtime(portable, code_dir)
        data, fmt, trusted = portable.data, "cloudpickle", []
        roots = portable.distributions
    model_file = "model.skops" if fmt == "skops" else "model.pkl"
    (folder / model_file).write_bytes(data)
    requirements = _mlflow_requirements(version, fmt, roots)
    code = "code" if code_dir.is_dir() else None
    python_function: dict[str, Any] = {
        "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
        "loader_module": "mlflow.sklearn",
        "model_path": model_file,
        "predict_fn": "predict",
        "python_version": python_version(),
    }
    if code is not None:
        python_function["code"] = code
    flavors: dict[str, Any] = {
        "python_function": python_function,
        "sklearn": {
            "code": code,
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
            "conveyor_version": _version_of("conveyor-ml"),
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


def _load_for_export(registry: Registry, version: ModelVersion) -> Any:
    try:
        return registry.load(version)
    except (ModuleNotFoundError, AttributeError) as exc:
        module = getattr(exc, "name", None) or str(exc)
        raise BadInput(
            f"Model {version.ref} holds classes this Python cannot import ({type(exc).__name__}: {exc}). Run the "
            f"export where the module {module!r} is importable (from the folder that holds it, or with it "
            "installed), and pass --code PATH to bundle that module with the export.",
            model=version.ref,
        ) from exc


def _missing_code_message(ref: str, missing: dict[str, list[str]], given: bool) -> str:
    needs = "; ".join(f"{root} (for {', '.join(sorted(set(names))[:3])})" for root, names in missing.items())
    first = next(iter(missing))
    if given:
        return (
            f"Model {ref} needs the module(s) {needs}, which neither an installed package nor the --code paths "
            f"provide. Pass the file or folder that defines them, e.g. --code ./{first}.py or --code ./{first}/."
        )
    return (
        f"Model {ref} needs your own module(s) {needs}, which no package on the public index provides, so the "
        f"export would not load elsewhere. Bundle them with --code PATH (e.g. --code ./{first}.py or the package "
        "folder); MLflow puts them on sys.path when it loads the model."
    )


def _mlflow_requirements(version: ModelVersion, fmt: str, roots: set[str]) -> list[str]:
    """What an environment needs to load the export: the version's pinned requirements without Conveyor
    (bundled instead), plus every installed distribution the pickle or the bundled runtime imports."""
    lines: dict[str, str] = {}
    for line in version.requirements:
        package = line.split("==")[0]
        if package in ("conveyor-ml", "skops", "joblib"):
            continue
        lines[_canonical(package)] = line
    for root in sorted(roots):
        pinned = pin(root)
        if pinned is None:
            continue
        package = _canonical(pinned.split("==")[0])
        if package not in ("conveyor-ml", "cloudpickle"):
            lines.setdefault(package, pinned)
    if fmt == "skops":
        lines["skops"] = f"skops=={_version_of('skops')}"
    else:
        lines["cloudpickle"] = f"cloudpickle=={_version_of('cloudpickle')}"
    return list(lines.values())


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


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
