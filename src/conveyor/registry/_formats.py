"""How model files are written and read: skops (safe) when every type in the model is allowed, joblib otherwise.

A skops file is loaded with an explicit list of trusted types: the types recorded when the model was stored,
each of which must also be in the allowlist below (scikit-learn, NumPy, SciPy, LightGBM, XGBoost and
Conveyor's own featurisation). A joblib file is a pickle; it is only ever read from bytes whose SHA-256 the
artifact store has just verified against the registry's record, so only bytes Conveyor itself stored are
unpickled.
"""

from __future__ import annotations

import importlib
import io
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from conveyor.errors import Conflict

__all__ = [
    "ModelFormat",
    "SerializedModel",
    "allowed_type",
    "dump_model",
    "load_model",
    "model_modules",
    "pinned_requirements",
]

ModelFormat = Literal["skops", "joblib"]

#: Packages whose types a skops file may contain.
_TRUSTED_PACKAGES = ("sklearn", "numpy", "scipy", "lightgbm", "xgboost")
#: Standard-library containers with no behaviour beyond a dict's (LightGBM's models hold an OrderedDict).
_TRUSTED_TYPES = frozenset({"collections.OrderedDict"})
#: Conveyor's own modules whose classes and functions may appear inside models (featurisation).
_CONVEYOR_MODULES = ("conveyor.train",)
#: Distribution names of the packages above, pinned in a version's requirements when its model uses them.
_DISTRIBUTIONS = {"lightgbm": "lightgbm", "xgboost": "xgboost", "conveyor": "conveyor-ml"}
_ALWAYS_PINNED = ("scikit-learn", "numpy", "pandas", "scipy")
_ALTERNATIVES = {"xgboost": ("xgboost-cpu",)}


@dataclass(frozen=True)
class SerializedModel:
    """A model's bytes, how they are serialised, and the non-default types a skops load must trust."""

    format: ModelFormat
    data: bytes
    trusted_types: list[str]
    reason: str = ""

    @property
    def filename(self) -> str:
        return f"model.{self.format}"


def allowed_type(name: str) -> bool:
    """Whether a type named in a skops file (``module.Name``) may be trusted when loading."""
    module, _, attribute = name.rpartition(".")
    if not module or not attribute:
        return False
    if name in _TRUSTED_TYPES or module.split(".")[0] in _TRUSTED_PACKAGES:
        return True
    if not any(module == m or module.startswith(m + ".") for m in _CONVEYOR_MODULES):
        return False
    # Only what Conveyor's modules define themselves, never a name they happen to import.
    try:
        value = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return False
    return getattr(value, "__module__", None) == module


def dump_model(model: Any) -> SerializedModel:
    """Serialise ``model``: skops when every type it holds is allowed and it loads back, else joblib."""
    reason = ""
    try:
        import skops.io as sio

        data = sio.dumps(model)
        untrusted = sorted(sio.get_untrusted_types(data=data))
        refused = [t for t in untrusted if not allowed_type(t)]
        if not refused:
            sio.loads(data, trusted=untrusted)
            return SerializedModel("skops", data, untrusted)
        reason = f"types outside the skops allowlist: {', '.join(refused)}"
    except Exception as exc:  # noqa: BLE001 - any failure of skops means the model is stored with joblib
        reason = f"skops could not store it ({type(exc).__name__}: {exc})"
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return SerializedModel("joblib", buffer.getvalue(), [], reason)


def load_model(fmt: str, data: bytes, trusted_types: Iterable[str], *, what: str) -> Any:
    """A model object from verified bytes.

    Raises:
        Conflict: a skops file holds types that were not recorded as trusted or are not allowed, or the
            format is unknown.
    """
    if fmt == "skops":
        import skops.io as sio

        trusted = set(trusted_types)
        found = sio.get_untrusted_types(data=data)
        refused = sorted(t for t in found if t not in trusted or not allowed_type(t))
        if refused:
            raise Conflict(
                f"{what} holds types Conveyor does not trust: {', '.join(refused)}. It was not loaded. "
                "Re-register the model from the run that trained it.",
                types=refused,
            )
        return sio.loads(data, trusted=sorted(found))
    if fmt == "joblib":
        import joblib

        return joblib.load(io.BytesIO(data))
    raise Conflict(f"{what} is stored in an unknown format {fmt!r}; this Conveyor reads 'skops' and 'joblib'.")


def model_modules(model: Any, trusted_types: Iterable[str] = ()) -> set[str]:
    """Top-level packages whose code the model uses (from its estimators and the skops type list)."""
    modules = {t.split(".")[0] for t in trusted_types}
    for obj in _walk(model, depth=0):
        module = getattr(obj, "__module__", None) or type(obj).__module__
        modules.add(str(module).split(".")[0])
    return modules


def _walk(obj: Any, depth: int) -> Iterator[Any]:
    if depth > 8:
        return
    yield obj
    children: list[Any] = []
    if hasattr(obj, "get_params") and not isinstance(obj, type):
        try:
            children = list(obj.get_params(deep=False).values())
        except Exception:  # noqa: BLE001 - a model whose parameters cannot be read is scanned no deeper
            children = []
    elif isinstance(obj, list | tuple):
        children = list(obj)
    for child in children:
        if child is None or isinstance(child, str | int | float | bool):
            continue
        if callable(child) or hasattr(child, "get_params") or isinstance(child, list | tuple):
            yield from _walk(child, depth + 1)


def pinned_requirements(fmt: str, modules: Iterable[str]) -> list[str]:
    """``package==version`` lines for what loading the model needs, from the versions installed here."""
    packages = list(_ALWAYS_PINNED)
    packages.append("skops" if fmt == "skops" else "joblib")
    packages.extend(_DISTRIBUTIONS[m] for m in sorted(set(modules)) if m in _DISTRIBUTIONS)
    pins = []
    for package in dict.fromkeys(packages):
        # the same import may come from another distribution (Conveyor installs xgboost-cpu, which has no
        # CUDA libraries); the requirement names the usual one, at the installed version
        for distribution in (package, *_ALTERNATIVES.get(package, ())):
            try:
                pins.append(f"{package}=={metadata.version(distribution)}")
                break
            except metadata.PackageNotFoundError:
                continue
    return pins


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))
