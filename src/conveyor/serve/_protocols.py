"""Request and response protocols of online endpoints, as pure functions (no server, no I/O).

Three ways in, one way to the model: every decoder checks a request against the model signature and returns
*columns*, a ``dict`` of column name to a 1-D numpy array (``Columns``), in signature order:

- ``POST /predict``: a JSON list of records (or ``{"records": [...]}``): ``records_to_columns``.
- MLflow's ``POST /invocations`` (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, or a
  CSV body): ``mlflow_to_columns``; answer with ``mlflow_response``.
- The Open Inference Protocol (KServe V2) ``POST /v2/models/{name}/infer``: ``v2_to_columns``; answer with
  ``v2_response``; ``v2_model_metadata`` and ``v2_server_metadata`` for the metadata routes.

Each ``*_to_columns`` has a ``*_to_frame`` twin that returns the DataFrame the model takes. A micro-batching
server should keep columns per request, merge them with ``concat_columns`` and build one frame with
``columns_to_frame``: building a DataFrame costs far more than checking a request, and merging arrays is
cheaper than ``pd.concat`` of frames. Measured with timeit (best of 5) on the churn signature (14 columns:
5 long, 4 double, 1 boolean, 3 string, 1 datetime), pandas 3.0, numpy 2.4, on a shared 2-core machine under
load (load average ~5), so the absolute numbers are upper bounds; the ratios are the point::

                                 1 row      64 rows
    records_to_columns          ~30 µs      ~320 µs
    records_to_frame           ~670 µs      ~770 µs    (the copy from _app.py: ~1,200 µs / ~1,560 µs)
    mlflow_to_columns (split)   ~45 µs      ~145 µs
    v2_to_columns (by column)   ~60 µs
    concat_columns, 64 one-row requests:   ~270 µs
    columns_to_frame, 64 rows:             ~420 µs    (pd.concat of 64 one-row frames: ~4,800 µs)

Building the DataFrame dominates (pandas infers ``str`` dtype for text columns), so build one per batch.

Column values follow the signature type:

- ``integer``/``long``: int64, or float64 with NaN where a value is null (whole-valued floats such as
  ``3.0`` are accepted up to 2**53 in magnitude; ``3.5`` is refused rather than truncated).
- ``float``/``double``: float64, null as NaN; non-finite values are refused.
- ``boolean``: bool, or object holding ``None`` where a value is null.
- ``datetime``: object holding the ISO-8601 text as sent (the model's featurizer parses it).
- ``string``, ``binary`` and any other type: object holding text; numbers and booleans sent for a text column
  become their JSON text (``7`` becomes ``"7"``).

Fields, columns or tensors the signature does not have (an id, a timestamp) are refused with ``strict=True``
(the decoders' default) and, with ``strict=False`` (a deployment's default), left out as MLflow does: the rows
are scored on the inputs the model takes, and the names left out are appended to the caller's ``ignored``
list, so the response can say so.

A null is refused in a column the signature marks required. Every refusal raises
``conveyor.errors.InvalidSpec`` (HTTP 422) with a message that names the field, tensor or key and the fix; no
other exception escapes for any JSON value.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from conveyor._version import __version__
from conveyor.errors import InvalidSpec, did_you_mean

__all__ = [
    "MLFLOW_INPUT_KEYS",
    "V2_OUTPUTS",
    "Columns",
    "columns_to_frame",
    "concat_columns",
    "mlflow_response",
    "mlflow_to_columns",
    "mlflow_to_frame",
    "parse_json",
    "records_to_columns",
    "records_to_frame",
    "v2_model_metadata",
    "v2_response",
    "v2_server_metadata",
    "v2_to_columns",
    "v2_to_frame",
]

Columns: TypeAlias = dict[str, npt.NDArray[Any]]

#: The keys of MLflow's JSON scoring protocol; a body holds exactly one of them.
MLFLOW_INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
#: The output tensors an Open Inference Protocol response can hold.
V2_OUTPUTS = ("predict", "predict_proba")

_INTEGRAL = frozenset({"integer", "long"})
_NUMERIC = _INTEGRAL | {"float", "double"}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_EXACT = 2**53  # every whole float up to this magnitude is exactly one integer
_NONE = type(None)
_ONLY_INT = frozenset({int})
_INT_FLOAT = frozenset({int, float})
_INT_OR_NULL = frozenset({int, _NONE})
_NUMBER_OR_NULL = frozenset({int, float, _NONE})
_BOOL_OR_NULL = frozenset({bool, _NONE})
_TEXT_OR_NULL = frozenset({str, _NONE})
_ONLY_STR = frozenset({str})
# The ISO-8601 forms clients send in practice; anything else goes to pandas, whose parser is the reference.
_ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?)?", re.ASCII
)


# --- signature plans ---------------------------------------------------------------------------------------


Caster: TypeAlias = Callable[[list[Any], "_Column", str, str], npt.NDArray[Any]]


@dataclass(frozen=True, slots=True)
class _Column:
    name: str
    kind: str
    required: bool
    cast: Caster


@dataclass(frozen=True, slots=True)
class _Plan:
    columns: tuple[_Column, ...]
    names: tuple[str, ...]
    known: frozenset[str]
    by_name: dict[str, _Column]
    example: str


# Keyed by id() and holding the signature itself, so an id cannot be reused while its entry lives.
# Signatures are immutable definitions (see DESIGN.md); one compiled plan per served version is the point.
_PLANS: dict[int, tuple[Mapping[str, Any], _Plan]] = {}
_MAX_PLANS = 64


def _plan(signature: Mapping[str, Any]) -> _Plan:
    hit = _PLANS.get(id(signature))
    if hit is not None and hit[0] is signature:
        return hit[1]
    columns = tuple(
        _Column(
            name=str(c["name"]),
            kind=str(c.get("type", "string")),
            required=bool(c.get("required", True)),
            cast=_CASTS.get(str(c.get("type", "string")), _texts),
        )
        for c in signature.get("inputs") or []
    )
    example = orjson.dumps([{c.name: _EXAMPLES.get(c.kind, "") for c in columns[:2]}]).decode()
    plan = _Plan(
        columns=columns,
        names=tuple(c.name for c in columns),
        known=frozenset(c.name for c in columns),
        by_name={c.name: c for c in columns},
        example=example.replace(",", ", ").replace(":", ": "),
    )
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.clear()
    _PLANS[id(signature)] = (signature, plan)
    return plan


class _Extras:
    """What to do with names the signature does not have: refuse them (strict), or note them and go on."""

    __slots__ = ("names", "strict")

    def __init__(self, strict: bool, names: list[str] | None) -> None:
        self.strict = strict
        self.names = names if names is not None else []

    def found(self, extra: Sequence[Any], plan: _Plan, noun: str) -> None:
        if self.strict:
            _unknown(extra, plan, noun)
        seen = set(self.names)
        for name in extra:
            text = str(name)
            if text not in seen:
                seen.add(text)
                self.names.append(text)

    def explain(self, exc: InvalidSpec, plan: _Plan) -> InvalidSpec:
        """``exc`` saying which fields were left out, with a "did you mean" (a typo no longer fails alone)."""
        if not self.names:
            return exc
        shown = ", ".join(repr(n) for n in self.names[:5]) + (", ..." if len(self.names) > 5 else "")
        hint = next((h for h in (did_you_mean(n, plan.known) for n in self.names[:20]) if h), "")
        return InvalidSpec(
            f"{exc.message} The model does not take {shown}, so {'it was' if len(self.names) == 1 else 'they were'} "
            f"left out.{hint}",
            **exc.details,
        )


_REFUSE = _Extras(True, None)


def _extras(strict: bool, ignored: list[str] | None) -> _Extras:
    return _REFUSE if strict else _Extras(False, ignored)


_EXAMPLES: dict[str, object] = {
    "integer": 0,
    "long": 0,
    "float": 0.5,
    "double": 0.5,
    "boolean": True,
    "datetime": "2024-05-31",
}


# --- casting one column ------------------------------------------------------------------------------------
# Each caster takes the column's JSON values and a noun/unit pair for messages ("Field", "record" gives
# "Field 'x' in record 3 ..."). The fast path checks the set of value types, which is C-level work; only
# when it sees something unusual does a per-value loop run, to name the offending value.


def _missing(values: list[Any], column: _Column, noun: str, unit: str) -> None:
    if column.required:
        row = next(i for i, v in enumerate(values) if v is None)
        raise InvalidSpec(
            f"{noun} {column.name!r} is required but missing or null in {unit} {row}; send a value in every {unit}."
        )


def _numbers(values: list[Any], column: _Column, noun: str, unit: str) -> npt.NDArray[Any]:
    types = set(map(type, values))
    if _NONE in types:
        _missing(values, column, noun, unit)
    integral = column.kind in _INTEGRAL
    try:
        if integral and types == _ONLY_INT:
            return np.array(values, dtype=np.int64)
        # Floats in an integer column go to the loop, which refuses fractions instead of truncating them.
        if types <= (_INT_OR_NULL if integral else _NUMBER_OR_NULL):
            present = [v for v in values if v is not None] if _NONE in types else values
            # math.isfinite per value beats np.isfinite on small batches, the common case.
            if all(map(math.isfinite, present)):
                return np.array(values, dtype=np.float64)  # None becomes NaN
    except OverflowError:
        pass  # an int beyond int64 or float64: the loop below names it
    return _numbers_checked(values, column, noun, unit)


def _numbers_checked(values: list[Any], column: _Column, noun: str, unit: str) -> npt.NDArray[Any]:
    integral = column.kind in _INTEGRAL
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        where = f"{noun} {column.name!r} in {unit} {i}"
        if v is None:
            out[i] = np.nan
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidSpec(f"{where} must be a number ({column.kind}); got {_show(v)}.")
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidSpec(f"{where} is {v}; send a finite number or null.")
        if integral and isinstance(v, float) and not v.is_integer():
            raise InvalidSpec(f"{where} must be a whole number ({column.kind}); got {v!r}.")
        if integral and isinstance(v, float) and abs(v) > _FLOAT_EXACT:
            # Past 2**53 a float is not the integer the client meant: the JSON parser turns integers beyond
            # 64 bits into floats, so -2**63 - 1 would arrive as -2**63 and pass the range check below.
            raise InvalidSpec(f"{where} is {v!r}, too large to read exactly as a float; send it as an integer.")
        if integral and not _INT64_MIN <= v <= _INT64_MAX:
            raise InvalidSpec(f"{where} is {v}, outside the 64-bit integer range; send a smaller number.")
        try:
            out[i] = v
        except OverflowError:
            raise InvalidSpec(f"{where} is too large for a 64-bit float; send a smaller number.") from None
    if integral and not np.isnan(out).any():
        # Exact ints, not the float copy, so values beyond 2**53 keep every digit.
        return np.array([int(v) for v in values], dtype=np.int64)
    return out


def _booleans(values: list[Any], column: _Column, noun: str, unit: str) -> npt.NDArray[Any]:
    types = set(map(type, values))
    if types == {bool}:
        return np.array(values, dtype=np.bool_)
    if types <= _BOOL_OR_NULL:
        _missing(values, column, noun, unit)
        return _objects(values)
    i, v = next((i, v) for i, v in enumerate(values) if v is not None and type(v) is not bool)
    raise InvalidSpec(f"{noun} {column.name!r} in {unit} {i} must be true or false; got {_show(v)}.")


def _texts(values: list[Any], column: _Column, noun: str, unit: str) -> npt.NDArray[Any]:
    types = set(map(type, values))
    if types == _ONLY_STR:
        return _objects(values)
    if _NONE in types:
        _missing(values, column, noun, unit)
    texts: list[Any] = []
    for i, v in enumerate(values):
        if v is None or isinstance(v, str):
            texts.append(v)
        elif isinstance(v, int | float):
            # The JSON text the client typed: 7 -> "7", true -> "true".
            texts.append(_json_text(v, f"{noun} {column.name!r} in {unit} {i}"))
        else:
            raise InvalidSpec(f"{noun} {column.name!r} in {unit} {i} must be text; got {_kind(v)}.")
    return _objects(texts)


def _datetimes(values: list[Any], column: _Column, noun: str, unit: str) -> npt.NDArray[Any]:
    types = set(map(type, values))
    if types <= _TEXT_OR_NULL:
        if _NONE in types:
            _missing(values, column, noun, unit)
        if all(v is None or _is_iso(v) for v in values):
            return _objects(values)
    texts = pd.Series([v if isinstance(v, str) else None for v in values], dtype=object)
    parsed = pd.to_datetime(texts, errors="coerce", format="ISO8601", utc=True)
    for i, v in enumerate(values):
        if v is not None and (not isinstance(v, str) or pd.isna(parsed.iloc[i])):
            raise InvalidSpec(
                f"{noun} {column.name!r} in {unit} {i} must be an ISO-8601 date or time such as '2024-05-31'; "
                f"got {_show(v)}."
            )
    if any(v is None for v in values):
        _missing(values, column, noun, unit)
    return _objects(values)


def _is_iso(text: str) -> bool:
    if _ISO_DATE.fullmatch(text) is None:
        return False
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


_CASTS: dict[str, Caster] = {
    **dict.fromkeys(_NUMERIC, _numbers),
    "boolean": _booleans,
    "datetime": _datetimes,
}


def _objects(values: list[Any]) -> npt.NDArray[Any]:
    # Filling an empty object array never nests, whatever the values are.
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _json_text(value: int | float, where: str) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        raise InvalidSpec(f"{where} is a number too large to read as text; send it as a string.") from None


def _first_duplicate(names: Sequence[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _show(value: Any) -> str:
    if isinstance(value, dict | list):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- columns in, frames out --------------------------------------------------------------------------------


def columns_to_frame(columns: Columns) -> pd.DataFrame:
    """The DataFrame the model takes, from checked columns.

    Args:
        columns: what a ``*_to_columns`` decoder or ``concat_columns`` returned.

    Returns:
        A frame with one column per entry, in the same order; the arrays are not copied where pandas can avoid it.
    """
    return pd.DataFrame(columns, copy=False)


def concat_columns(batches: Sequence[Columns]) -> Columns:
    """The rows of several requests as one set of columns, in request order (for micro-batching).

    Request ``k``'s rows are ``sum(n[:k]) .. sum(n[:k+1])`` of the result, where ``n[j]`` is the length of any
    column of ``batches[j]``: split the predictions with ``np.split(predictions, np.cumsum(n)[:-1])``.
    A column that is int64 in one request and float64 (nulls) in another becomes float64.

    Args:
        batches: columns decoded for the same signature (same names, same order).

    Raises:
        InvalidSpec: ``batches`` is empty or its members have different columns.
    """
    if not batches:
        raise InvalidSpec("concat_columns needs at least one batch of columns.")
    first = batches[0]
    if len(batches) == 1:
        return first
    names = first.keys()
    if any(b.keys() != names for b in batches):
        raise InvalidSpec("concat_columns needs batches decoded for the same signature; their columns differ.")
    return {name: np.concatenate([b[name] for b in batches]) for name in names}


def _untyped(raw: Mapping[str, list[Any]]) -> Columns:
    # No signature: no checks either; pandas infers each column's type, as from_records would.
    return {name: pd.Series(values, dtype=None).to_numpy() for name, values in raw.items()}


# --- POST /predict: records --------------------------------------------------------------------------------


def records_to_columns(
    records: Any, signature: Mapping[str, Any], *, strict: bool = True, ignored: list[str] | None = None
) -> Columns:
    """Check a ``POST /predict`` body against the signature and return its columns.

    Args:
        records: the parsed JSON body, a list of records or ``{"records": [...]}``.
        signature: the model version's signature, ``{"inputs": [{"name", "type", "required"}], ...}``.
        strict: refuse fields the signature does not have; when False they are left out (as MLflow does).
        ignored: with ``strict=False``, receives the names of the fields left out (each once, as first seen).

    Returns:
        One array per signature input, in signature order (see the module docstring for the dtypes). Without
        signature inputs, the records' own fields with types pandas infers.

    Raises:
        InvalidSpec: the body is not a non-empty list of objects, a field is unknown (with "did you mean") and
            ``strict``, a required field is missing or null, or a value does not fit its column's type.
    """
    plan = _plan(signature)
    if isinstance(records, dict) and "records" in records:
        records = records["records"]
    extras = _extras(strict, ignored)
    try:
        return _records(records, plan, "The body", extras)
    except InvalidSpec as exc:
        raise extras.explain(exc, plan) from None


def records_to_frame(
    records: Any, signature: Mapping[str, Any], *, strict: bool = True, ignored: list[str] | None = None
) -> pd.DataFrame:
    """``records_to_columns`` as the DataFrame the model takes; see there for arguments and errors."""
    return columns_to_frame(records_to_columns(records, signature, strict=strict, ignored=ignored))


def _records(records: Any, plan: _Plan, what: str, extras: _Extras) -> Columns:
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise InvalidSpec(f"{what} must be a non-empty JSON list of records, e.g. {plan.example}.")
    if not plan.columns:
        names = list(dict.fromkeys(key for record in records for key in record))
        return _untyped({name: [record.get(name) for record in records] for name in names})
    known = plan.known
    for record in records:
        if not record.keys() <= known:
            extras.found([key for key in record if key not in known], plan, "field")
    if len(records) == 1:
        record = records[0]
        return {c.name: c.cast([record.get(c.name)], c, "Field", "record") for c in plan.columns}
    return {c.name: c.cast([record.get(c.name) for record in records], c, "Field", "record") for c in plan.columns}


def _unknown(extra: Sequence[Any], plan: _Plan, noun: str) -> None:
    name = str(extra[0])
    raise InvalidSpec(
        f"Unknown {noun} {name!r} in the request; the model takes: {', '.join(sorted(plan.known))}."
        f"{did_you_mean(name, plan.known)}"
    )


def _rows(rows: Any, names: Sequence[str], plan: _Plan, what: str, extras: _Extras) -> Columns:
    """Columns from a list of rows, each a list of values in the order of ``names``."""
    if not isinstance(rows, list) or not rows:
        raise InvalidSpec(f"{what} must be a non-empty JSON list of rows.")
    width = len(names)
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else _kind(row)
            raise InvalidSpec(f"Row {i} of {what} must be a list of {width} values ({', '.join(names)}); got {got}.")
    raw = dict(zip(names, map(list, zip(*rows, strict=True)), strict=True))
    return _typed(raw, len(rows), plan, "Column", "row", extras)


def _typed(raw: Mapping[str, list[Any]], n: int, plan: _Plan, noun: str, unit: str, extras: _Extras) -> Columns:
    """Cast named raw columns of ``n`` values each; absent signature columns are all null."""
    if not plan.columns:
        return _untyped(raw)
    extra = [name for name in raw if name not in plan.known]
    if extra:
        extras.found(extra, plan, noun.lower())
    return {c.name: c.cast(raw.get(c.name) or [None] * n, c, noun, unit) for c in plan.columns}


# --- MLflow: POST /invocations -----------------------------------------------------------------------------


def mlflow_to_columns(
    payload: Any,
    content_type: str,
    signature: Mapping[str, Any],
    *,
    strict: bool = True,
    ignored: list[str] | None = None,
) -> Columns:
    """Check an MLflow scoring request (as ``mlflow models serve`` takes it) and return its columns.

    JSON bodies hold exactly one of ``dataframe_split`` (``{"columns", "data", "index"?}``),
    ``dataframe_records`` (a list of records), ``instances`` or ``inputs`` (a list of records, a list of rows in
    signature order, a list of values for a one-column signature, or an object of columns); ``params`` is
    allowed and ignored, other keys are ignored as MLflow does. ``text/csv`` bodies have a header row.

    Args:
        payload: the raw body (bytes or str), or for JSON the already parsed value.
        content_type: the request's Content-Type, e.g. ``application/json; charset=utf-8``.
        signature: the model version's signature.
        strict: refuse columns the signature does not have; when False they are left out (as MLflow does).
        ignored: with ``strict=False``, receives the names of the columns left out.

    Raises:
        InvalidSpec: an unsupported content type or charset, a body that does not parse, not exactly one input
            key, a malformed shape, or values that do not fit the signature.
    """
    plan = _plan(signature)
    extras = _extras(strict, ignored)
    try:
        return _mlflow(payload, content_type, plan, extras)
    except InvalidSpec as exc:
        raise extras.explain(exc, plan) from None


def _mlflow(payload: Any, content_type: str, plan: _Plan, extras: _Extras) -> Columns:
    mime = _media_type(content_type)
    if mime == "text/csv":
        return _csv(_text(payload), plan, extras)
    body = parse_json(payload) if isinstance(payload, bytes | bytearray | memoryview | str) else payload
    if not isinstance(body, dict):
        raise InvalidSpec(
            f"The body must be a JSON object with exactly one of {', '.join(MLFLOW_INPUT_KEYS)}; got "
            f'{_kind(body)}. Wrap records as {{"dataframe_records": {plan.example}}}.'
        )
    keys = [k for k in MLFLOW_INPUT_KEYS if k in body]
    if len(keys) != 1:
        if keys:
            raise InvalidSpec(f"The body holds {' and '.join(keys)}; send exactly one of them.")
        hint = "".join(did_you_mean(str(k), MLFLOW_INPUT_KEYS) for k in body)
        raise InvalidSpec(
            f"The body must hold exactly one of {', '.join(MLFLOW_INPUT_KEYS)}; got keys: "
            f"{', '.join(repr(k) for k in body) or 'none'}.{hint}"
        )
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise InvalidSpec(f"'params' must be a JSON object of parameter names to values; got {_kind(params)}.")
    key = keys[0]
    data = body[key]
    if key == "dataframe_split":
        return _split(data, plan, extras)
    if key == "dataframe_records":
        return _records(data, plan, "'dataframe_records'", extras)
    return _tf_serving(data, key, plan, extras)


def mlflow_to_frame(
    payload: Any,
    content_type: str,
    signature: Mapping[str, Any],
    *,
    strict: bool = True,
    ignored: list[str] | None = None,
) -> pd.DataFrame:
    """``mlflow_to_columns`` as the DataFrame the model takes; see there for arguments and errors."""
    return columns_to_frame(mlflow_to_columns(payload, content_type, signature, strict=strict, ignored=ignored))


def mlflow_response(predictions: Any) -> dict[str, Any]:
    """The ``/invocations`` answer, ``{"predictions": [...]}``, as MLflow builds it.

    Arrays become (nested) lists, a DataFrame a list of records, a Series a list of one-field records; other
    values are returned as they are. Serialise with orjson (NaN becomes null).
    """
    if isinstance(predictions, np.ndarray):
        return {"predictions": predictions.tolist()}
    if isinstance(predictions, pd.DataFrame):
        return {"predictions": predictions.to_dict(orient="records")}
    if isinstance(predictions, pd.Series):
        return {"predictions": predictions.to_frame().to_dict(orient="records")}
    return {"predictions": predictions}


def parse_json(payload: bytes | bytearray | memoryview | str) -> Any:
    """Parse a JSON body, refusing what does not parse with an ``InvalidSpec``."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidSpec(f"The body is not valid JSON: {exc}.") from None


def _media_type(content_type: str) -> str:
    mime, *parameters = (part.strip() for part in content_type.split(";"))
    mime = mime.lower()
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"').lower()
        if key != "charset":
            raise InvalidSpec(
                f"Content type parameter {key!r} is not supported (MLflow 2 dropped 'format='); send "
                "'application/json' with a dataframe_split, dataframe_records, instances or inputs key, or 'text/csv'."
            )
        if value not in {"utf-8", "utf8"}:
            raise InvalidSpec(f"Charset {value!r} is not supported; send the body as UTF-8.")
    if mime not in {"application/json", "text/csv"}:
        raise InvalidSpec(f"Content type {mime!r} is not supported; send 'application/json' or 'text/csv'.")
    return mime


def _text(payload: Any) -> str:
    if isinstance(payload, str):
        return payload
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            return bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidSpec("The CSV body is not UTF-8 text; send it encoded as UTF-8.") from None
    raise InvalidSpec(f"A text/csv body must be text; got {_kind(payload)}.")


def _split(data: Any, plan: _Plan, extras: _Extras) -> Columns:
    if not isinstance(data, dict):
        raise InvalidSpec(
            f'\'dataframe_split\' must be an object {{"columns": [...], "data": [[...], ...]}}; got {_kind(data)}.'
        )
    unexpected = sorted(set(data) - {"columns", "data", "index"})
    if unexpected:
        raise InvalidSpec(
            f"'dataframe_split' has unknown key {unexpected[0]!r}; it takes 'columns', 'data' and 'index'."
            f"{did_you_mean(unexpected[0], ['columns', 'data', 'index'])}"
        )
    columns = data.get("columns")
    if columns is None:
        if not plan.columns:
            raise InvalidSpec("'dataframe_split' must name its 'columns'; this model has no signature to go by.")
        names: list[str] = list(plan.names)
    elif not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InvalidSpec("'dataframe_split.columns' must be a list of column names.")
    elif (twice := _first_duplicate(columns)) is not None:
        raise InvalidSpec(f"'dataframe_split.columns' names {twice!r} twice; name each column once.")
    else:
        names = columns
    if "data" not in data:
        raise InvalidSpec("'dataframe_split' must hold 'data', a list of rows.")
    rows = data["data"]
    index = data.get("index")
    if index is not None and (not isinstance(index, list) or (isinstance(rows, list) and len(index) != len(rows))):
        raise InvalidSpec("'dataframe_split.index' must be a list with one label per row of 'data', or left out.")
    return _rows(rows, names, plan, "'dataframe_split.data'", extras)


def _tf_serving(data: Any, key: str, plan: _Plan, extras: _Extras) -> Columns:
    if isinstance(data, dict):
        if data and not any(isinstance(v, list) for v in data.values()):
            # An object of scalars is one record, as MLflow reads it.
            return _records([data], plan, f"{key!r}", extras)
        return _column_object(data, plan, key, extras)
    if not isinstance(data, list) or not data:
        raise InvalidSpec(
            f"{key!r} must be a non-empty list of records, a list of rows or an object of columns; "
            f"got {_kind(data) if data != [] else 'an empty list'}."
        )
    if all(isinstance(r, dict) for r in data):
        return _records(data, plan, f"{key!r}", extras)
    if all(isinstance(r, list) for r in data):
        if not plan.columns:
            raise InvalidSpec(f"{key!r} as a list of rows needs a signature to name the columns; send records.")
        return _rows(data, plan.names, plan, f"{key!r}", extras)
    if len(plan.columns) == 1 and not any(isinstance(v, dict | list) for v in data):
        return _typed({plan.names[0]: data}, len(data), plan, "Column", "row", extras)
    raise InvalidSpec(
        f"{key!r} must be a list of records (objects), a list of rows (lists) or an object of columns; "
        "it mixes kinds or holds plain values."
    )


def _column_object(data: dict[str, Any], plan: _Plan, key: str, extras: _Extras) -> Columns:
    lengths = set()
    for name, values in data.items():
        if not isinstance(values, list):
            raise InvalidSpec(f"Column {name!r} of {key!r} must be a list of values; got {_kind(values)}.")
        lengths.add(len(values))
    if len(lengths) != 1 or 0 in lengths:
        raise InvalidSpec(
            f"The columns of {key!r} must be non-empty lists of the same length; got lengths {sorted(lengths)}."
        )
    return _typed(data, lengths.pop(), plan, "Column", "row", extras)


def _csv(text: str, plan: _Plan, extras: _Extras) -> Columns:
    if not plan.columns:
        # No signature to type the cells: let pandas infer them, as MLflow does.
        try:
            frame = pd.read_csv(io.StringIO(text))
        except ValueError as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
            raise InvalidSpec(f"The CSV body does not parse: {exc}.") from None
        return {str(name): frame[name].to_numpy() for name in frame.columns}
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InvalidSpec(f"The CSV body does not parse: {exc}.") from None
    table = [row for row in table if row]
    if len(table) < 2:
        raise InvalidSpec("The CSV body must have a header row and at least one data row.")
    header, rows = table[0], table[1:]
    if len(set(header)) != len(header):
        raise InvalidSpec("The CSV header names a column twice; name each column once.")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise InvalidSpec(f"CSV row {i + 1} has {len(row)} values; the header has {len(header)}.")
    raw = {
        name: [_csv_value(cell, plan.by_name.get(name)) for cell in cells]
        for name, cells in zip(header, zip(*rows, strict=True), strict=True)
    }
    return _typed(raw, len(rows), plan, "Column", "row", extras)


_CSV_BOOLEANS = {"true": True, "false": False}


def _csv_value(cell: str, column: _Column | None) -> Any:
    """A CSV cell as the JSON value it stands for; what does not convert stays text for the caster to refuse."""
    if cell == "":
        return None
    kind = column.kind if column is not None else "string"
    if kind in _NUMERIC and "_" not in cell:  # float() takes "1_000"; CSV does not mean it
        try:
            return int(cell) if kind in _INTEGRAL and cell.lstrip("+-").isdigit() else float(cell)
        except ValueError:
            return cell
    if kind == "boolean":
        return _CSV_BOOLEANS.get(cell.strip().lower(), cell)
    return cell


# --- Open Inference Protocol (KServe V2) -------------------------------------------------------------------

_V2_INTEGERS = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (_INT64_MIN, _INT64_MAX),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_V2_FLOATS = frozenset({"FP16", "FP32", "FP64"})
_V2_DATATYPES = (*_V2_INTEGERS, *sorted(_V2_FLOATS), "BOOL", "BYTES")
#: The V2 datatype each signature type is published as, and the datatypes a tensor for it may have.
_V2_OF_KIND = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
}
_V2_NUMERIC = frozenset(_V2_INTEGERS) | _V2_FLOATS


def _v2_accepts(kind: str, datatype: str) -> bool:
    if kind in _NUMERIC:
        return datatype in _V2_NUMERIC
    if kind == "boolean":
        return datatype == "BOOL"
    return datatype == "BYTES"


def v2_to_columns(
    payload: Any, signature: Mapping[str, Any], *, strict: bool = True, ignored: list[str] | None = None
) -> tuple[Columns, str | None, list[str] | None]:
    """Check an Open Inference Protocol infer request and return its columns.

    Two layouts are taken: one tensor per signature input (named as the input, shape ``[N]`` or ``[N, 1]``;
    absent optional inputs are null), or one 2-D tensor ``[N, F]`` whose ``F`` columns are all the signature's
    inputs in order (when one datatype fits them all, e.g. FP64 for numeric columns). ``data`` is row-major,
    flat or nested as the shape says. Request, tensor and output ``parameters`` (an object or null) are accepted
    and ignored.

    Args:
        payload: the parsed JSON body (or its bytes).
        signature: the model version's signature.
        strict: refuse input tensors the signature does not have; when False they are left out (they must still
            be well-formed tensors with unique names; their values are not checked against a type).
        ignored: with ``strict=False``, receives the names of the tensors left out.

    Returns:
        ``(columns, request_id, requested_outputs)``: ``request_id`` is the request's ``id`` (echo it in the
        response) and ``requested_outputs`` the names in its ``outputs`` (a subset of ``V2_OUTPUTS``), or
        ``None`` when it asks for none.

    Raises:
        InvalidSpec: a malformed request, an unknown datatype or output, a shape that does not match the data,
            a datatype that does not fit the input's type, an unknown or missing input, or bad values.
    """
    plan = _plan(signature)
    body = parse_json(payload) if isinstance(payload, bytes | bytearray | memoryview | str) else payload
    if not isinstance(body, dict):
        raise InvalidSpec(f'The body must be a JSON object {{"inputs": [...]}}; got {_kind(body)}.')
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidSpec(f"'id' must be a string; got {_kind(request_id)}.")
    if not _is_parameters(body.get("parameters")):
        raise InvalidSpec("'parameters' must be an object of parameter names to values.")
    outputs = _requested_outputs(body.get("outputs"))
    tensors = body.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidSpec(
            '\'inputs\' must be a non-empty list of tensors {"name", "shape", "datatype", "data"}, one per model input.'
        )
    decoded = [_tensor_in(t, i) for i, t in enumerate(tensors)]
    names = [d[0] for d in decoded]
    if (twice := _first_duplicate(names)) is not None:
        raise InvalidSpec(f"Input tensor {twice!r} is sent twice; send each input once.")
    if len(decoded) == 1 and len(decoded[0][1]) == 2 and decoded[0][0] not in plan.known and plan.columns:
        return _v2_matrix(*decoded[0], plan), request_id, outputs
    extras = _extras(strict, ignored)
    try:
        return _v2_by_column(decoded, plan, extras), request_id, outputs
    except InvalidSpec as exc:
        raise extras.explain(exc, plan) from None


def v2_to_frame(
    payload: Any, signature: Mapping[str, Any], *, strict: bool = True, ignored: list[str] | None = None
) -> tuple[pd.DataFrame, str | None, list[str] | None]:
    """``v2_to_columns`` with the DataFrame the model takes; see there for arguments and errors."""
    columns, request_id, outputs = v2_to_columns(payload, signature, strict=strict, ignored=ignored)
    return columns_to_frame(columns), request_id, outputs


def _requested_outputs(outputs: Any) -> list[str] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise InvalidSpec(f"'outputs' must be a list of {{\"name\": ...}} objects, naming {' or '.join(V2_OUTPUTS)}.")
    for o in outputs:
        if not _is_parameters(o.get("parameters")):
            raise InvalidSpec(f"The 'parameters' of output {o['name']!r} must be an object.")
    names = list(dict.fromkeys(o["name"] for o in outputs))
    for name in names:
        if name not in V2_OUTPUTS:
            raise InvalidSpec(
                f"Unknown output {name!r}; this endpoint gives {', '.join(V2_OUTPUTS)}.{did_you_mean(name, V2_OUTPUTS)}"
            )
    return names or None


def _is_parameters(value: Any) -> bool:
    # Null or an object; `value or {}` would also let 0, "", false and [] through.
    return value is None or isinstance(value, dict)


def _tensor_in(tensor: Any, position: int) -> tuple[str, list[int], str, list[Any]]:
    """A request tensor's name, shape, datatype and flat data; the elements are checked once the layout is known."""
    if not isinstance(tensor, dict):
        raise InvalidSpec(
            f'Input {position} must be an object {{"name", "shape", "datatype", "data"}}; got {_kind(tensor)}.'
        )
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InvalidSpec(f"Input {position} must have a string 'name'.")
    for key in ("shape", "datatype", "data"):
        if key not in tensor:
            raise InvalidSpec(f"Input tensor {name!r} has no {key!r}.")
    shape, datatype, data = tensor["shape"], tensor["datatype"], tensor["data"]
    if not _is_parameters(tensor.get("parameters")):
        raise InvalidSpec(f"The 'parameters' of input tensor {name!r} must be an object.")
    if not isinstance(shape, list) or not shape or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidSpec(
            f"The shape of input tensor {name!r} must be a list of sizes such as [2] or [2, 3]; got {_show(shape)}."
        )
    if len(shape) > 2:
        raise InvalidSpec(
            f"Input tensor {name!r} has shape {shape}; this model takes tensors of shape [N], [N, 1] or [N, F]."
        )
    if datatype not in _V2_DATATYPES:
        hint = did_you_mean(datatype, _V2_DATATYPES) if isinstance(datatype, str) else ""
        raise InvalidSpec(
            f"Input tensor {name!r} has datatype {_show(datatype)}; use one of {', '.join(_V2_DATATYPES)}.{hint}"
        )
    if 0 in shape:
        raise InvalidSpec(f"Input tensor {name!r} has shape {shape} and holds no rows; send at least one.")
    return name, shape, datatype, _flatten(data, shape, name)


def _flatten(data: Any, shape: list[int], name: str) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidSpec(f"The data of input tensor {name!r} must be a JSON array; got {_kind(data)}.")
    size = math.prod(shape)
    if not any(isinstance(x, list) for x in data):
        if len(data) != size:
            raise InvalidSpec(
                f"Input tensor {name!r} has shape {shape}, which holds {size} values, but its data "
                f"has {len(data)}; send shape [{len(data)}] or {size} values."
            )
        return data
    if (
        len(shape) == 1
        or len(data) != shape[0]
        or not all(
            isinstance(row, list) and len(row) == shape[1] and not any(isinstance(x, list) for x in row) for row in data
        )
    ):
        raise InvalidSpec(
            f"The nested data of input tensor {name!r} does not follow its shape {shape}; send {shape[0]} lists of "
            f"{shape[-1]} values, or the {size} values flat in row-major order."
        )
    return [x for row in data for x in row]


def _check_elements(flat: list[Any], datatype: str, name: str) -> None:
    """Refuse elements that are not of the tensor's datatype (nulls pass: the column decides on them)."""
    with_null = set(map(type, flat))
    types = with_null - {_NONE}
    if datatype in _V2_INTEGERS:
        low, high = _V2_INTEGERS[datatype]
        present = [x for x in flat if x is not None] if _NONE in with_null else flat
        if types <= {int} and (not present or (low <= min(present) and max(present) <= high)):
            return
        wanted = f"whole numbers from {low} to {high}"
    elif datatype in _V2_FLOATS:
        if types <= _INT_FLOAT:
            return
        wanted = "numbers"
    elif datatype == "BOOL":
        if types <= {bool}:
            return
        wanted = "true or false"
    else:
        if types <= {str}:
            return
        wanted = "strings"
    bad = next((i, x) for i, x in enumerate(flat) if x is not None and not _fits(x, datatype))
    raise InvalidSpec(
        f"Element {bad[0]} of input tensor {name!r} ({datatype}) must be one of {wanted}; got {_show(bad[1])}."
    )


def _fits(value: Any, datatype: str) -> bool:
    if datatype in _V2_INTEGERS:
        low, high = _V2_INTEGERS[datatype]
        return type(value) is int and low <= value <= high
    if datatype in _V2_FLOATS:
        return type(value) in _INT_FLOAT
    return type(value) is (bool if datatype == "BOOL" else str)


def _v2_by_column(decoded: list[tuple[str, list[int], str, list[Any]]], plan: _Plan, extras: _Extras) -> Columns:
    for name, _, _, _ in decoded:
        if plan.columns and name not in plan.known:
            if extras.strict:
                raise InvalidSpec(
                    f"Unknown input tensor {name!r}; the model takes: {', '.join(plan.names)} (one tensor each), "
                    f"or one [N, {len(plan.columns)}] tensor of all of them in that order."
                    f"{did_you_mean(name, plan.known)}"
                )
            extras.found([name], plan, "input tensor")
    if plan.columns and not extras.strict:
        decoded = [d for d in decoded if d[0] in plan.known]
        if not decoded:
            raise InvalidSpec(
                f"None of the input tensors is one the model takes: {', '.join(plan.names)} (one tensor each), or "
                f"one [N, {len(plan.columns)}] tensor of all of them in that order."
            )
    rows = {shape[0] for _, shape, _, _ in decoded}
    for name, shape, datatype, flat in decoded:
        if len(shape) == 2 and shape[1] != 1:
            raise InvalidSpec(
                f"Input tensor {name!r} has shape {shape}; a tensor for one input has shape [N] or [N, 1]."
            )
        column = plan.by_name.get(name)
        if column is not None and not _v2_accepts(column.kind, datatype):
            raise InvalidSpec(
                f"Input tensor {name!r} has datatype {datatype}, but input {name!r} is "
                f"{column.kind}; send datatype {_v2_datatype(column.kind)}."
            )
        _check_elements(flat, datatype, name)
    sent = {name for name, _, _, _ in decoded}
    absent = [c.name for c in plan.columns if c.required and c.name not in sent]
    if absent:
        raise InvalidSpec(
            f"Input tensor {absent[0]!r} is missing; the model requires: "
            f"{', '.join(c.name for c in plan.columns if c.required)}."
        )
    if len(rows) != 1:
        raise InvalidSpec(
            f"The input tensors hold different numbers of rows ({', '.join(map(str, sorted(rows)))}); "
            "send the same N in every tensor's shape."
        )
    return _typed({name: flat for name, _, _, flat in decoded}, rows.pop(), plan, "Tensor", "element", extras)


def _v2_matrix(name: str, shape: list[int], datatype: str, flat: list[Any], plan: _Plan) -> Columns:
    n, width = shape
    if width != len(plan.columns):
        raise InvalidSpec(
            f"Input tensor {name!r} has shape {shape}, but the model takes {len(plan.columns)} inputs "
            f"({', '.join(plan.names)}); send shape [{n}, {len(plan.columns)}] or one tensor per input."
        )
    for column in plan.columns:
        if not _v2_accepts(column.kind, datatype):
            raise InvalidSpec(
                f"Input tensor {name!r} has datatype {datatype}, which does not fit input {column.name!r} "
                f"({column.kind}); send one tensor per input, named after it, with its own datatype."
            )
    _check_elements(flat, datatype, name)
    noun = f"Tensor {name!r} column"
    return {c.name: c.cast(flat[j::width], c, noun, "row") for j, c in enumerate(plan.columns)}


def _v2_datatype(kind: str) -> str:
    return _V2_OF_KIND.get(kind, "BYTES")


def v2_response(
    model_name: str,
    model_version: str | None,
    request_id: str | None,
    predictions: Any,
    probabilities: Any = None,
    requested_outputs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """An Open Inference Protocol infer response.

    Args:
        model_name: the model's name.
        model_version: the served version, or ``None`` to leave ``model_version`` out.
        request_id: the request's ``id``, echoed when given.
        predictions: what the model's ``predict`` returned (array, Series or list), N values or N rows.
        probabilities: what ``predict_proba`` returned, ``[N, classes]``, if the model has it.
        requested_outputs: the request's ``outputs`` as ``v2_to_columns`` returned them; ``None`` gives
            ``predict`` and, when ``probabilities`` is given, ``predict_proba``.

    Returns:
        ``{"model_name", "model_version"?, "id"?, "outputs": [...]}`` where each output is
        ``{"name", "shape", "datatype", "data"}`` with flat row-major data. ``predict``'s datatype follows the
        array: BOOL, INT64 (UINT64 for uint64), FP64, or BYTES for text, dates and anything else;
        ``predict_proba`` is FP64 of shape ``[N, classes]``. Serialise with orjson (NaN becomes null).

    Raises:
        InvalidSpec: an output was asked for that is unknown or that this model does not give.
    """
    names = (
        list(requested_outputs)
        if requested_outputs
        else ["predict", *(["predict_proba"] if probabilities is not None else [])]
    )
    outputs: list[dict[str, Any]] = []
    for name in names:
        if name == "predict":
            outputs.append(_tensor_out("predict", np.asarray(predictions)))
        elif name == "predict_proba" and probabilities is not None:
            outputs.append(_tensor_out("predict_proba", np.asarray(probabilities, dtype=np.float64)))
        elif name == "predict_proba":
            raise InvalidSpec(
                "Output 'predict_proba' was asked for, but this model gives no probabilities; ask for 'predict'."
            )
        else:
            raise InvalidSpec(
                f"Unknown output {name!r}; this endpoint gives {', '.join(V2_OUTPUTS)}.{did_you_mean(name, V2_OUTPUTS)}"
            )
    body: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        body["model_version"] = str(model_version)
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = outputs
    return body


def _tensor_out(name: str, array: npt.NDArray[Any]) -> dict[str, Any]:
    array = np.atleast_1d(array)
    if array.dtype == object:
        # Predictions collected in object arrays (pandas, label lists) are often plain numbers underneath.
        inferred = pd.api.types.infer_dtype(array.ravel(), skipna=False)
        target = {
            "integer": np.int64,
            "floating": np.float64,
            "mixed-integer-float": np.float64,
            "boolean": np.bool_,
        }.get(inferred)
        if target is not None:
            array = array.astype(target)
    kind = array.dtype.kind
    if kind == "b":
        datatype = "BOOL"
    elif kind == "i" or (kind == "u" and array.dtype.itemsize < 8):
        datatype, array = "INT64", array.astype(np.int64)
    elif kind == "u":
        datatype = "UINT64"
    elif kind == "f":
        datatype, array = "FP64", array.astype(np.float64)
    else:
        datatype = "BYTES"
        if kind == "M":
            array = np.datetime_as_string(array)
        array = np.array([_bytes_text(v) for v in array.ravel()], dtype=object).reshape(array.shape)
    return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.ravel().tolist()}


def _bytes_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def v2_model_metadata(
    model_name: str,
    versions: Sequence[str | int],
    signature: Mapping[str, Any],
    platform: str,
    *,
    classes: int | None = None,
) -> dict[str, Any]:
    """The Open Inference Protocol model metadata, ``GET /v2/models/{name}[/versions/{v}]``.

    Args:
        model_name: the model's name.
        versions: the versions that may be asked for by URL.
        signature: the served version's signature; each input becomes a tensor of shape ``[-1]``.
        platform: the framework, e.g. ``"sklearn"`` or ``"onnx"``.
        classes: for a classifier, the number of classes, which adds ``predict_proba`` of shape ``[-1, classes]``.

    Returns:
        ``{"name", "versions", "platform", "inputs", "outputs"}``; signature types map to datatypes as boolean:
        BOOL, integer: INT32, long: INT64, float: FP32, double: FP64, anything else: BYTES. ``predict`` takes the
        type of the signature's first output (BYTES when it has none).
    """
    inputs = [
        {"name": str(c["name"]), "datatype": _v2_datatype(str(c.get("type", "string"))), "shape": [-1]}
        for c in signature.get("inputs") or []
    ]
    declared = signature.get("outputs") or []
    predict_type = _v2_datatype(str(declared[0].get("type", "string"))) if declared else "BYTES"
    outputs: list[dict[str, Any]] = [{"name": "predict", "datatype": predict_type, "shape": [-1]}]
    if classes is not None:
        outputs.append({"name": "predict_proba", "datatype": "FP64", "shape": [-1, classes]})
    return {
        "name": model_name,
        "versions": [str(v) for v in versions],
        "platform": platform,
        "inputs": inputs,
        "outputs": outputs,
    }


def v2_server_metadata(extensions: Sequence[str] = ()) -> dict[str, Any]:
    """The Open Inference Protocol server metadata, ``GET /v2``: ``{"name", "version", "extensions"}``."""
    return {"name": "conveyor", "version": __version__, "extensions": list(extensions)}
