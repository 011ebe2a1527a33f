"""Names a package re-exports, loaded on first use (PEP 562).

A package ``__init__`` lists where each public name lives and hands its module ``__getattr__`` to
:func:`load`; ``import conveyor.data`` then costs nothing, and ``conveyor.data.DataAssets`` imports
``conveyor.data._assets`` (and pandas with it) only when a caller asks for it. The package keeps its
``__all__`` and imports the same names under ``TYPE_CHECKING`` for type checkers and editors.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import Any

__all__ = ["load"]


def load(package: str, homes: Mapping[str, str], name: str) -> Any:
    """The public ``name`` of ``package``, imported from its module ``homes[name]`` and kept in the package.

    Raises:
        AttributeError: ``name`` is not one of the package's public names.
    """
    home = homes.get(name)
    if home is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{package}.{home}"), name)
    setattr(sys.modules[package], name, value)
    return value
