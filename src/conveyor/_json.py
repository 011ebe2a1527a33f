"""JSON encoding shared by the faces (CLI ``--json``, REST responses, endpoints): orjson, plus the types query
results carry that orjson leaves out."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
from typing import Any

import orjson

__all__ = ["dumps"]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def dumps(value: Any, *, indent: bool = False) -> bytes:
    """``value`` as JSON bytes (dataclasses, datetimes, numpy values, decimals included)."""
    return orjson.dumps(value, default=_default, option=_OPTIONS | (orjson.OPT_INDENT_2 if indent else 0))
