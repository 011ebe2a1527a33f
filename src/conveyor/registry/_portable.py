"""A model made portable: a pickle that needs no Conveyor, plus the small runtime it does need.

Models Conveyor makes hold Conveyor's own classes (the AutoML ensemble, the featurisation, the forecaster). An
environment built from an exported model's ``requirements.txt`` has no Conveyor (it is not on the public
index), so the export carries those classes as code, the way MLflow's ``code_paths`` do: the modules the model
references, and the Conveyor modules they import in turn, are copied under ``code/`` into a package of their
own, ``conveyor_runtime_<hash>`` (named after its content, so two exports of different Conveyor versions never
share a package in one process, and never shadow an installed ``conveyor``). The model is pickled with every
reference to ``conveyor.X`` written as a reference to ``conveyor_runtime_<hash>.X``.

Every other module the pickle names is classified: the standard library, an installed distribution (pinned in
the requirements), or the user's own code, which must be bundled with ``--code PATH``.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import importlib.util
import io
import operator
import re
import shutil
import sys
import types
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from conveyor.errors import BadInput
from conveyor.registry._formats import _ALTERNATIVES

__all__ = [
    "RUNTIME_PREFIX",
    "PortableModel",
    "bundle_code",
    "make_portable",
    "pin",
    "user_modules_missing",
    "write_runtime",
]

RUNTIME_PREFIX = "conveyor_runtime_"
_ROOT = "conveyor"
#: Distributions installed here under another name than the one the public index knows them by.
_PUBLIC_NAMES = {alternative: name for name, alternatives in _ALTERNATIVES.items() for alternative in alternatives}
_NOT_MODULES = {"builtins", "__main__", "__builtin__", "__future__"}


@dataclass
class PortableModel:
    """The pickle, the runtime modules it needs (module name → source file) and what else it references."""

    data: bytes
    package: str | None
    runtime: dict[str, Path] = field(default_factory=dict)
    #: top-level packages of installed distributions the pickle or the runtime imports
    distributions: set[str] = field(default_factory=set)
    #: top-level modules that are neither standard library, Conveyor, nor installed distributions
    user_modules: dict[str, list[str]] = field(default_factory=dict)


class _ModuleRef:
    """Pickles as ``importlib.import_module(name)``: the one way a relocated reference is written."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return importlib.import_module, (self.name,)


def _pickler_class() -> type:
    import cloudpickle

    class PortablePickler(cloudpickle.Pickler):  # type: ignore[misc]
        """cloudpickle, recording every module a class or function is referenced from, and writing references
        into ``conveyor.*`` as references into ``package.*`` when a package is given."""

        def __init__(self, file: io.BytesIO, package: str | None) -> None:
            super().__init__(file, protocol=4)
            self.package = package
            self.modules: dict[str, list[str]] = {}

        def reducer_override(self, obj: Any) -> Any:
            if isinstance(obj, types.ModuleType):
                if _is_conveyor(obj.__name__):
                    self.modules.setdefault(obj.__name__, [])
                    if self.package is not None:
                        return importlib.import_module, (_relocate(obj.__name__, self.package),)
                return super().reducer_override(obj)
            if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
                module = getattr(obj, "__module__", None)
                qualname = str(getattr(obj, "__qualname__", None) or getattr(obj, "__name__", ""))
                if isinstance(module, str) and _by_reference(obj, module, qualname):
                    self.modules.setdefault(module, []).append(qualname)
                    if self.package is not None and _is_conveyor(module):
                        return operator.attrgetter(qualname), (_ModuleRef(_relocate(module, self.package)),)
            return super().reducer_override(obj)

    return PortablePickler


def _is_conveyor(module: str) -> bool:
    return module == _ROOT or module.startswith(_ROOT + ".")


def _relocate(module: str, package: str) -> str:
    return package + module[len(_ROOT) :]


def _by_reference(obj: Any, module: str, qualname: str) -> bool:
    """Whether pickle would write ``obj`` as a reference to ``module.qualname`` (it is importable there)."""
    if module in _NOT_MODULES or "<" in qualname:
        return False
    try:
        return bool(operator.attrgetter(qualname)(importlib.import_module(module)) is obj)
    except Exception:  # noqa: BLE001 - anything not importable is pickled by value (cloudpickle) or fails there
        return False


def _pickle(model: Any, package: str | None) -> tuple[bytes, dict[str, list[str]]]:
    buffer = io.BytesIO()
    pickler = _pickler_class()(buffer, package)
    pickler.dump(model)
    return buffer.getvalue(), pickler.modules


def make_portable(model: Any, what: str) -> PortableModel:
    """Pickle ``model`` so that loading it needs no ``conveyor`` package, and say what loading it does need."""
    try:
        _, referenced = _pickle(model, None)
    except Exception as exc:
        raise BadInput(
            f"{what} cannot be pickled for an MLflow export ({type(exc).__name__}: {exc}).", model=what
        ) from exc
    conveyor_modules = {m for m in referenced if _is_conveyor(m)}
    runtime = _runtime_closure(conveyor_modules)
    package = _package_name(runtime) if runtime else None
    data, referenced = _pickle(model, package) if package else _pickle(model, None)
    distributions: set[str] = set()
    user: dict[str, list[str]] = {}
    for module, names in referenced.items():
        if _is_conveyor(module):
            continue
        root = module.split(".")[0]
        kind = _classify(root)
        if kind == "distribution":
            distributions.add(root)
        elif kind == "user":
            user.setdefault(root, []).extend(f"{module}.{n}" for n in names)
    for path in runtime.values():
        for root in _third_party_imports(path):
            if _classify(root) == "distribution":
                distributions.add(root)
    return PortableModel(data, package, runtime, distributions, user)


def _classify(root: str) -> str:
    if root in _NOT_MODULES or root in sys.stdlib_module_names:
        return "stdlib"
    if root == _ROOT:
        return "conveyor"
    if _distribution_names(root):
        return "distribution"
    return "user"


def _distribution_names(root: str) -> list[str]:
    return list(_packages_distributions().get(root, []))


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return {k: list(v) for k, v in metadata.packages_distributions().items()}


def pin(root: str) -> str | None:
    """``distribution==version`` for an installed top-level package, by the name the public index knows."""
    for name in _distribution_names(root):
        with contextlib.suppress(metadata.PackageNotFoundError):
            version = metadata.version(name)
            return f"{_PUBLIC_NAMES.get(name.lower(), name)}=={version}"
    return None


# -- the runtime: Conveyor modules the model needs ---------------------------------------------------------


def _runtime_closure(roots: set[str]) -> dict[str, Path]:
    """The source file of every Conveyor module in ``roots`` and of every Conveyor module they import (at any
    depth, including imports inside functions; not those under ``if TYPE_CHECKING:``)."""
    found: dict[str, Path] = {}
    todo = sorted(roots)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise BadInput(f"The model needs Conveyor's module {name!r}, whose source cannot be found to bundle.")
        path = Path(spec.origin)
        found[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        conveyor_imports, _ = _imports(path, package)
        todo.extend(sorted(conveyor_imports - found.keys()))
    return found


def _third_party_imports(path: Path) -> set[str]:
    return _imports(path, "")[1]


def _imports(path: Path, package: str) -> tuple[set[str], set[str]]:
    """(Conveyor modules, other top-level packages) that the file at ``path`` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    ours: set[str] = set()
    others: set[str] = set()

    def add(base: str, name: str | None) -> None:
        if not base:
            return
        if not _is_conveyor(base):
            root = base.split(".", maxsplit=1)[0]
            if root != "__future__":
                others.add(root)
            return
        if name is not None and name != "*" and _is_module(f"{base}.{name}"):
            ours.add(f"{base}.{name}")
        else:
            ours.add(base)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.orelse:
                    visit_one(statement)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, None)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not package:
                    return
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            else:
                base = node.module or ""
            for alias in node.names:
                add(base, alias.name)
        visit(node)

    visit(tree)
    return ours, others


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError, ValueError):
        return False


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _package_name(runtime: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name in sorted(runtime):
        digest.update(name.encode() + b"\0" + runtime[name].read_bytes() + b"\0")
    return RUNTIME_PREFIX + digest.hexdigest()[:12]


_DOTTED = re.compile(r"\bconveyor(?=\.[A-Za-z_])")
_BARE_IMPORT = re.compile(r"(?m)^(\s*(?:from|import)\s+)conveyor\b(?!\.)")


def _rewrite(source: str, package: str) -> str:
    source = _DOTTED.sub(package, source)
    return _BARE_IMPORT.sub(lambda m: m.group(1) + package, source)


def write_runtime(portable: PortableModel, code: Path) -> None:
    """Write the runtime package under ``code``."""
    if not portable.package:
        return
    root = code / portable.package
    for name, path in sorted(portable.runtime.items()):
        parts = name.split(".")[1:]
        target = root.joinpath(*parts, "__init__.py") if path.name == "__init__.py" else root.joinpath(*parts)
        if path.name != "__init__.py":
            target = target.with_suffix(".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_rewrite(path.read_text(encoding="utf-8"), portable.package), encoding="utf-8")
    # Packages whose own __init__ the model does not need get an empty one (the real ones import the world).
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        init = folder / "__init__.py"
        if not init.exists():
            init.write_text('"""Part of the Conveyor runtime bundled with an exported model."""\n')


# -- the user's own code -------------------------------------------------------------------------------------


def bundle_code(paths: list[Path], code: Path) -> None:
    """Copy each file or folder into ``code`` by its name, as MLflow's ``code_paths`` do."""
    for path in paths:
        target = code / path.name
        if target.exists():
            raise BadInput(
                f"Two --code paths are both named {path.name!r}; MLflow puts each under code/ by its name. "
                "Rename one or pass their common parent folder.",
                path=str(path),
            )
        if path.is_dir():
            shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            code.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def user_modules_missing(portable: PortableModel, code: Path | None) -> dict[str, list[str]]:
    """The user modules the pickle references that ``code`` does not provide."""
    missing = {}
    for root, names in sorted(portable.user_modules.items()):
        if code is not None and ((code / f"{root}.py").is_file() or (code / root).is_dir()):
            continue
        missing[root] = names
    return missing
