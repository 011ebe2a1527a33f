"""Makes a Python process see only what the exported image installs (tests/serve/test_export.py): with
``SLIM_ALLOWED`` (a JSON list of top-level module names) set, importing anything outside the standard library,
Conveyor and that list fails as it would in the image. Inherited by the serving process's workers through
``PYTHONPATH``. Optional imports libraries guard with try/except (sklearn probing for dask, ...) fail quietly,
as they do in the image."""

from __future__ import annotations

import importlib.abc
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

_ALLOWED = frozenset(json.loads(os.environ.get("SLIM_ALLOWED", "[]")))


class _OnlyTheImage(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in _ALLOWED or top in sys.stdlib_module_names or top == "conveyor" or top.startswith("_"):
            return None
        print(f"slim: {top} is not in the image", file=sys.stderr, flush=True)
        raise ModuleNotFoundError(f"No module named {top!r} (not in the image)", name=top)


if "SLIM_ALLOWED" in os.environ:
    sys.meta_path.insert(0, _OnlyTheImage())
