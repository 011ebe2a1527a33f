"""The ASGI app of one deployment's serving process: health routes and ``POST /predict``.

Requests are validated against the model signature before they reach the model; every refusal is a 4xx
with a JSON body ``{"error": {"code", "message"}}`` that names the field and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.errors import BadInput, ConveyorError, InvalidSpec

__all__ = ["MAX_BODY_BYTES", "ServedModel", "create_endpoint_app", "records_to_frame"]

MAX_BODY_BYTES = 10 * 1024 * 1024
_NUMERIC = {"integer", "long", "float", "double"}


@dataclass(frozen=True)
class ServedModel:
    """What a serving process holds: the model object and what it is."""

    endpoint: str
    deployment: str
    model_ref: str
    model: Any
    signature: dict[str, Any]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def records_to_frame(records: Any, signature: dict[str, Any]) -> Any:
    """Turn a JSON list of records into a DataFrame with the signature's columns and types.

    Raises:
        InvalidSpec: the body is not a non-empty list of objects, a required column is missing, a column is
            unknown, or a value does not fit its column's type.
    """
    import pandas as pd

    if isinstance(records, dict) and "records" in records:
        records = records["records"]
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise InvalidSpec(
            'The body must be a non-empty JSON list of records, e.g. [{"tenure_months": 12, "plan": "basic"}].'
        )
    columns = signature.get("inputs", [])
    if not columns:
        return pd.DataFrame.from_records(records)
    known = {c["name"] for c in columns}
    seen: set[str] = set()
    for record in records:
        seen.update(record)
    extra = sorted(seen - known)
    if extra:
        from conveyor.errors import did_you_mean

        raise InvalidSpec(
            f"Unknown field {extra[0]!r} in the request; the model takes: {', '.join(sorted(known))}."
            f"{did_you_mean(extra[0], known)}"
        )
    data: dict[str, Any] = {}
    for column in columns:
        name, kind = column["name"], column["type"]
        values = [record.get(name) for record in records]
        if column.get("required", True) and any(v is None for v in values):
            row = next(i for i, v in enumerate(values) if v is None)
            raise InvalidSpec(f"Field {name!r} is required but missing or null in record {row}.")
        data[name] = _cast(name, kind, values)
    return pd.DataFrame(data)


def _numbers(name: str, kind: str, values: list[Any]) -> Any:
    import numpy as np

    out = np.empty(len(values), dtype="float64")
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.nan
        elif isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidSpec(f"Field {name!r} in record {i} must be a number ({kind}); got {v!r}.")
        elif isinstance(v, float) and not math.isfinite(v):
            raise InvalidSpec(f"Field {name!r} in record {i} is {v}; send a finite number or null.")
        else:
            out[i] = v
    if kind in {"integer", "long"} and not np.isnan(out).any():
        return out.astype("int64")
    return out


def _datetimes(name: str, kind: str, values: list[Any]) -> Any:
    import numpy as np
    import pandas as pd

    texts = pd.Series([v if isinstance(v, str) else None for v in values], dtype=object)
    parsed = pd.to_datetime(texts, errors="coerce", format="ISO8601", utc=True)
    for i, v in enumerate(values):
        if v is not None and (not isinstance(v, str) or pd.isna(parsed.iloc[i])):
            raise InvalidSpec(
                f"Field {name!r} in record {i} must be an ISO-8601 date or time such as '2024-05-31'; got {v!r}."
            )
    return np.asarray(values, dtype=object)


def _booleans(name: str, kind: str, values: list[Any]) -> Any:
    for i, v in enumerate(values):
        if v is not None and not isinstance(v, bool):
            raise InvalidSpec(f"Field {name!r} in record {i} must be true or false; got {v!r}.")
    return values


def _texts(name: str, kind: str, values: list[Any]) -> Any:
    import numpy as np

    for i, v in enumerate(values):
        if v is not None and not isinstance(v, str | int | float | bool):
            raise InvalidSpec(f"Field {name!r} in record {i} must be text; got {type(v).__name__}.")
    return np.asarray(values, dtype=object)


_CASTS = {
    **dict.fromkeys(_NUMERIC, _numbers),
    "datetime": _datetimes,
    "boolean": _booleans,
}


def _cast(name: str, kind: str, values: list[Any]) -> Any:
    """The column's values checked against its signature type (anything else is taken as text)."""
    return _CASTS.get(kind, _texts)(name, kind, values)


def create_endpoint_app(served: ServedModel) -> Starlette:
    """The serving app for one loaded model."""

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        return JSONResponse({"ready": True, "model": served.model_ref})

    async def info(_: Request) -> Response:
        return JSONResponse(
            {
                "endpoint": served.endpoint,
                "deployment": served.deployment,
                "model": served.model_ref,
                "signature": served.signature,
                "routes": {
                    "predict": "/predict",
                    "live": "/v2/health/live",
                    "ready": "/v2/health/ready",
                },
            }
        )

    async def predict(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _error(
                413,
                "payload_too_large",
                f"The body is over {MAX_BODY_BYTES // (1024 * 1024)} MB; send fewer rows per request.",
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return _error(
                    413,
                    "payload_too_large",
                    f"The body is over {MAX_BODY_BYTES // (1024 * 1024)} MB; send fewer rows per request.",
                )
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _error(400, "bad_json", f"The body is not valid JSON: {exc}.")
        try:
            frame = records_to_frame(payload, served.signature)
            # Scoring a request is short CPU work; run it inline (the process is one deployment's worker).
            predictions = served.model.predict(frame)
        except ConveyorError as exc:
            return _error(exc.http_status, exc.code, exc.message)
        except (ValueError, TypeError) as exc:
            error = BadInput(f"The model could not score these rows: {exc}")
            return _error(422, error.code, error.message)
        return JSONResponse({"predictions": predictions.tolist(), "model": served.model_ref})

    routes = [
        Route("/", info, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
    ]
    return Starlette(routes=routes)
