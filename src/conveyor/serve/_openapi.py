"""The OpenAPI 3.1 document of an online endpoint, built from its spec (no server, no I/O).

``endpoint_openapi(spec)`` describes every route of :class:`conveyor.serve._app.EndpointApp`: the request bodies
of ``POST /predict`` (records), ``POST /invocations`` (MLflow) and the Open Inference Protocol
``POST /v2/models/{name}[/versions/{version}]/infer`` are typed from the first deployment's signature, every
refusal is the ``{"error": {"code", "message"}}`` body, and scoring routes take the ``conveyor-deployment``
header. With ``auth == "key"`` every route but the health checks needs ``Authorization: Bearer KEY``.

Request schemas describe a *superset* of what the decoders in ``_protocols`` accept: whatever a schema refuses,
the endpoint refuses too (a client can validate before sending), but not every body a schema allows is scored.
One exception: a datetime input is described as an RFC 3339 date or date-time, the forms clients should send,
though the endpoint also reads other ISO-8601 forms such as ``2024-05-31 13:45``.
Some rules cannot be said in JSON Schema, e.g. that a V2 tensor's ``data`` holds as many values as its
``shape`` says or that every row of ``dataframe_split.data`` is as wide as its ``columns``; those are
written in the descriptions, and the endpoint answers 422 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# The decoder's own list of datatypes, so the document cannot drift from what it takes.
from conveyor.serve._protocols import _V2_DATATYPES, MLFLOW_INPUT_KEYS, V2_OUTPUTS
from conveyor.serve._spec import EndpointSpec

__all__ = ["endpoint_openapi"]

JSON = dict[str, Any]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_REF = "#/components/schemas/"
_SCALAR: JSON = {"type": ["string", "number", "boolean", "null"]}
_EXAMPLE_VALUES: dict[str, Any] = {
    "integer": 1,
    "long": 1,
    "float": 0.5,
    "double": 0.5,
    "boolean": True,
    "datetime": "2024-05-31",
}
_PUBLIC_TAG, _SCORING_TAG, _METADATA_TAG = "health", "scoring", "metadata"


def endpoint_openapi(spec: EndpointSpec) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an endpoint.

    Args:
        spec: the endpoint; its first deployment's signature types the request bodies (deployments of one
            endpoint usually share a signature; a request is checked against the deployment that scores it).

    Returns:
        A JSON-serialisable OpenAPI 3.1.0 document: every route of the endpoint app, request and response
        schemas, the bearer security scheme when the endpoint needs a key, and the ``conveyor-deployment`` header.
    """
    first = spec.deployments[0] if spec.deployments else None
    inputs: list[Mapping[str, Any]] = list((first.signature.get("inputs") or []) if first is not None else [])
    deployments = [d.name for d in spec.deployments]
    versions = list(dict.fromkeys([*deployments, *(str(d.model_version) for d in spec.deployments)]))
    keyed = spec.auth == "key"
    # Fields the model does not take are refused only when every deployment is strict; a request may go to any.
    strict = bool(spec.deployments) and all(d.strict for d in spec.deployments)
    paths = _paths(keyed)
    document: JSON = {
        "openapi": "3.1.0",
        "info": {
            "title": f"Conveyor endpoint {spec.name}",
            "version": str(spec.revision),
            "description": _description(spec),
        },
        "tags": [
            {"name": _SCORING_TAG, "description": "Score rows with the served model."},
            {"name": _METADATA_TAG, "description": "What the endpoint serves."},
            {"name": _PUBLIC_TAG, "description": "Liveness and readiness; never need a key."},
        ],
        "paths": paths,
        "components": {
            "schemas": _schemas(inputs, spec.name, versions, strict=strict),
            "parameters": _parameters(spec.name, deployments, versions),
            "responses": _responses(),
        },
    }
    if keyed:
        document["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An endpoint key: `conveyor endpoints keys NAME` shows the primary and secondary keys.",
            }
        }
        # Secure by default; the health routes opt out with an empty requirement list.
        document["security"] = [{"bearer": []}]
    return document


def _description(spec: EndpointSpec) -> str:
    lines = [
        f"Online endpoint `{spec.name}` (revision {spec.revision}), serving: "
        + (", ".join(f"`{d.name}` ({d.model})" for d in spec.deployments) or "nothing")
        + ".",
        "",
        "Score with `POST /predict` (a JSON list of records), `POST /invocations` (MLflow's scoring protocol) or "
        f"`POST /v2/models/{spec.name}/infer` (the Open Inference Protocol). A request goes to the deployment "
        "named in the `conveyor-deployment` header, else to one picked by the live traffic weights.",
        "",
        'Every refusal is a 4xx or 5xx with the body `{"error": {"code", "message"}}`; the message names '
        "the field and the fix.",
    ]
    if spec.auth == "key":
        lines += ["", "Send `Authorization: Bearer KEY` on every route except the health checks."]
    return "\n".join(lines)


# --- schemas ------------------------------------------------------------------------------------------------


def _cell(column: Mapping[str, Any]) -> JSON:
    """The JSON Schema of one value of a signature column, as the decoders take it."""
    kind = str(column.get("type", "string"))
    required = bool(column.get("required", True))
    if kind in ("integer", "long"):
        # Whole floats (3.0) are accepted too, and JSON Schema counts them as integers.
        schema: JSON = {"type": "integer", "format": "int64", "minimum": _INT64_MIN, "maximum": _INT64_MAX}
    elif kind in ("float", "double"):
        schema = {"type": "number", "format": "double"}
    elif kind == "boolean":
        schema = {"type": "boolean"}
    elif kind == "datetime":
        # The formats say what clients send; the endpoint also reads other ISO-8601 forms (2024-05-31 13:45).
        schema = {
            "type": "string",
            "anyOf": [{"format": "date"}, {"format": "date-time"}],
            "description": "An ISO-8601 date or date and time, e.g. 2024-05-31 or 2024-05-31T13:45:00Z.",
            "examples": ["2024-05-31", "2024-05-31T13:45:00Z"],
        }
    else:
        # Numbers and booleans sent for a text column are taken as their JSON text (7 becomes "7").
        schema = {
            "type": ["string", "number", "boolean"],
            "description": "Text; a number or boolean is read as its JSON text.",
        }
    if not required:
        types = schema["type"]
        schema["type"] = [*types, "null"] if isinstance(types, list) else [types, "null"]
    schema["title"] = f"{column['name']} ({kind}{'' if required else ', optional'})"
    return schema


def _example_record(inputs: Sequence[Mapping[str, Any]]) -> JSON:
    return {str(c["name"]): _EXAMPLE_VALUES.get(str(c.get("type", "string")), "a") for c in inputs}


def _schemas(inputs: Sequence[Mapping[str, Any]], model_name: str, versions: list[str], *, strict: bool) -> JSON:
    names = [str(c["name"]) for c in inputs]
    example = _example_record(inputs)
    if inputs:
        record: JSON = {
            "type": "object",
            "description": "One row: a field per signature input. Optional inputs may be null or left out. "
            + (
                "Other fields are refused (the deployments are strict)."
                if strict
                else "Other fields (an id, a timestamp) are left out of scoring and named in the "
                "`conveyor-ignored-fields` response header."
            ),
            "properties": {str(c["name"]): _cell(c) for c in inputs},
            "required": [str(c["name"]) for c in inputs if c.get("required", True)],
            # Strict deployments refuse unknown fields (with a "did you mean"); the others ignore them, as MLflow.
            "additionalProperties": not strict,
            "examples": [example],
        }
    else:
        record = {"type": "object", "description": "One row; the model has no signature, so fields are not checked."}
    records: JSON = {"type": "array", "items": {"$ref": _REF + "Record"}, "minItems": 1}
    # Without a signature the values are not checked, so any JSON value may stand in a row.
    row: JSON = {"type": "array", "items": _SCALAR if names else {}}
    if names:
        row |= {
            "minItems": len(names),
            "maxItems": len(names),
            "description": f"One row's values in signature order ({', '.join(names)}).",
        }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "description": "On /v2/ routes `error` is the message itself, as the Open Inference Protocol requires, "
            "with `code` beside it; on the other routes it is an object with both.",
            "properties": {
                "error": {
                    "oneOf": [
                        {"type": "string", "description": "What is wrong, naming the field, and the fix."},
                        {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "description": "Machine-readable, e.g. invalid_spec."},
                                "message": {
                                    "type": "string",
                                    "description": "What is wrong, naming the field, and the fix.",
                                },
                            },
                        },
                    ]
                },
                "code": {"type": "string", "description": "Machine-readable, e.g. invalid_spec (on /v2/ routes)."},
            },
        },
        "Record": record,
        "Records": records,
        "PredictRequest": {
            "description": "A non-empty list of records, or the list under `records`.",
            "oneOf": [
                {"$ref": _REF + "Records"},
                {"type": "object", "required": ["records"], "properties": {"records": {"$ref": _REF + "Records"}}},
            ],
            **({"examples": [[example]]} if inputs else {}),
        },
        "PredictResponse": {
            "type": "object",
            "required": ["predictions", "model", "deployment"],
            "properties": {
                "predictions": {"type": "array", "description": "One prediction per record, in order."},
                "model": {"type": "string", "description": "The model version that scored, NAME:VERSION."},
                "deployment": {"type": "string", "description": "The deployment that scored."},
                "ignored_fields": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Fields of the records the model does not take, left out of scoring (only "
                    "present when there were some).",
                },
            },
        },
        **_mlflow_schemas(inputs, names, example, row, strict=strict),
        **_v2_schemas(inputs, model_name, versions, example),
        **_metadata_schemas(),
    }


def _mlflow_schemas(
    inputs: Sequence[Mapping[str, Any]], names: list[str], example: JSON, row: JSON, *, strict: bool
) -> JSON:
    columns: JSON = {
        "type": "array",
        # Only strict deployments refuse a column the signature does not have.
        "items": {"type": "string", "enum": names} if names and strict else {"type": "string"},
        "uniqueItems": True,
    }
    cell: JSON = {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR, "minItems": 1}]}
    tf_forms: list[JSON] = [
        {"$ref": _REF + "Records"},
        {"type": "array", "items": {"$ref": _REF + "Row"}, "minItems": 1, "description": "A list of rows."},
        {
            "type": "object",
            "minProperties": 1,
            "description": "An object of columns (lists of the same length), or of one record's values.",
            **(
                {"additionalProperties": cell, "propertyNames": {"enum": names}}
                if names and strict
                # Lenient: the inputs' values are checked; any other field is left out, whatever it holds.
                else {"properties": dict.fromkeys(names, cell), "additionalProperties": True}
                if names
                else {"additionalProperties": cell}
            ),
        },
    ]
    if len(names) == 1:
        tf_forms.append({"type": "array", "items": _SCALAR, "minItems": 1, "description": "The one input's values."})
    tf: JSON = {"anyOf": tf_forms}
    params: JSON = {"type": ["object", "null"], "description": "Accepted and ignored."}

    def variant(key: str, schema: JSON) -> JSON:
        return {"type": "object", "required": [key], "properties": {key: schema, "params": params}, "title": key}

    split: JSON = {
        "type": "object",
        "required": ["data"],
        "additionalProperties": False,
        "description": "pandas' split orient: `data` rows are as wide as `columns` (default: the signature's).",
        "properties": {
            "columns": {**columns, "type": ["array", "null"]},
            # As wide as `columns`, which may name fewer inputs than the signature: the width is not fixed here.
            "data": {"type": "array", "items": {"type": "array", "items": row["items"]}, "minItems": 1},
            "index": {"type": ["array", "null"], "description": "One label per row; ignored."},
        },
    }
    forms = {"dataframe_split": split, "dataframe_records": {"$ref": _REF + "Records"}, "instances": tf, "inputs": tf}
    return {
        "Row": row,
        "MlflowRequest": {
            "description": "Exactly one of " + ", ".join(f"`{k}`" for k in MLFLOW_INPUT_KEYS) + "; other keys "
            "are ignored, as MLflow does.",
            # The keys are mutually exclusive: a body holding two of them is refused, which is what oneOf says.
            "oneOf": [variant(key, forms[key]) for key in MLFLOW_INPUT_KEYS],
            **({"examples": [{"dataframe_records": [example]}]} if inputs else {}),
        },
        "MlflowCsv": {
            "type": "string",
            "description": "CSV with a header row naming the inputs, then one line per row (UTF-8).",
            **({"examples": [_csv_example(inputs, example)]} if inputs else {}),
        },
        "MlflowResponse": {
            "type": "object",
            "required": ["predictions"],
            "properties": {"predictions": {"type": "array", "description": "One prediction per row, in order."}},
        },
    }


def _csv_example(inputs: Sequence[Mapping[str, Any]], example: JSON) -> str:
    header = ",".join(str(c["name"]) for c in inputs)
    values = ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in example.values())
    return f"{header}\n{values}\n"


def _v2_schemas(inputs: Sequence[Mapping[str, Any]], model_name: str, versions: list[str], example: JSON) -> JSON:
    parameters: JSON = {"type": ["object", "null"], "description": "Accepted and ignored."}
    # KServe's tensor_data: values, flat in row-major order or nested one level per dimension.
    data: JSON = {"type": "array", "items": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]}}
    tensor_example = [
        {
            "name": name,
            "shape": [1],
            "datatype": _v2_datatype(str(c.get("type", "string"))),
            "data": [value],
        }
        for c, (name, value) in zip(inputs, example.items(), strict=True)
    ]
    return {
        "InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "description": "The Open Inference Protocol (KServe V2) inference request. Send one tensor per input, "
            "named as the input, of shape [N] or [N, 1]; or one [N, F] tensor holding all F inputs in signature "
            "order when one datatype fits them all (e.g. FP64 for numbers). `data` holds as many values as `shape` "
            "says.",
            "properties": {
                "id": {"type": ["string", "null"], "description": "Echoed in the response."},
                "parameters": parameters,
                "inputs": {"type": "array", "items": {"$ref": _REF + "RequestInput"}, "minItems": 1},
                "outputs": {
                    "type": ["array", "null"],
                    "items": {"$ref": _REF + "RequestOutput"},
                    "description": "The outputs to return; all of them when left out.",
                },
            },
            **({"examples": [{"id": "42", "inputs": tensor_example}]} if inputs else {}),
        },
        "RequestInput": {
            "type": "object",
            "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 2},
                "datatype": {"type": "string", "enum": list(_V2_DATATYPES)},
                "parameters": parameters,
                "data": data,
            },
        },
        "RequestOutput": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "enum": list(V2_OUTPUTS)}, "parameters": parameters},
        },
        "InferenceResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string", "enum": [model_name]},
                "model_version": {"type": "string", "enum": versions},
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": {"$ref": _REF + "ResponseOutput"}},
            },
        },
        "ResponseOutput": {
            "type": "object",
            "required": ["name", "shape", "datatype", "data"],
            "properties": {
                "name": {"type": "string", "enum": list(V2_OUTPUTS)},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": list(_V2_DATATYPES)},
                "parameters": {"type": "object"},
                # Flat, row-major; a missing value (NaN) is null.
                "data": {"type": "array", "items": _SCALAR},
            },
        },
        "MetadataTensor": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "properties": {
                "name": {"type": "string"},
                "datatype": {"type": "string", "enum": list(_V2_DATATYPES)},
                "shape": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string", "enum": [model_name]},
                "versions": {"type": "array", "items": {"type": "string", "enum": versions}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"$ref": _REF + "MetadataTensor"}},
                "outputs": {"type": "array", "items": {"$ref": _REF + "MetadataTensor"}},
            },
        },
        "ModelReady": {
            "type": "object",
            "required": ["name", "ready"],
            "properties": {"name": {"type": "string", "enum": [model_name]}, "ready": {"type": "boolean"}},
        },
    }


def _v2_datatype(kind: str) -> str:
    return {"boolean": "BOOL", "integer": "INT64", "long": "INT64", "float": "FP64", "double": "FP64"}.get(
        kind, "BYTES"
    )


def _metadata_schemas() -> JSON:
    return {
        "ServerMetadata": {
            "type": "object",
            "required": ["name", "version", "extensions"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
        },
        "Live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
        "Description": {
            "type": "object",
            "required": ["endpoint", "revision", "auth", "deployments", "routes"],
            "properties": {
                "endpoint": {"type": "string"},
                "revision": {"type": "integer"},
                "auth": {"type": "string", "enum": ["key", "none"]},
                "deployments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "model", "engine", "traffic", "mirror", "signature"],
                        "properties": {
                            "name": {"type": "string"},
                            "model": {"type": "string"},
                            "engine": {"type": "string", "enum": ["native", "onnx"]},
                            "traffic": {"type": "integer", "minimum": 0, "maximum": 100},
                            "mirror": {"type": "integer", "minimum": 0, "maximum": 100},
                            "signature": {"type": "object"},
                        },
                    },
                },
                "routes": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    }


# --- parameters and responses -------------------------------------------------------------------------------


def _parameters(model_name: str, deployments: list[str], versions: list[str]) -> JSON:
    return {
        "ModelName": {
            "name": "name",
            "in": "path",
            "required": True,
            "description": "The model's name: this endpoint's name.",
            "schema": {"type": "string", "enum": [model_name]},
        },
        "ModelVersion": {
            "name": "version",
            "in": "path",
            "required": True,
            "description": "A deployment's name or its model version number; targets that deployment.",
            "schema": {"type": "string", "enum": versions},
        },
        "Deployment": {
            "name": "conveyor-deployment",
            "in": "header",
            "required": False,
            "description": "The deployment to use; it takes precedence over the traffic weights and the URL's version.",
            "schema": {"type": "string", "enum": deployments},
        },
    }


def _error(description: str, *, retry: bool = False) -> JSON:
    response: JSON = {"description": description, "content": {"application/json": {"schema": {"$ref": _REF + "Error"}}}}
    if retry:
        response["headers"] = {
            "retry-after": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
        }
    return response


def _responses() -> JSON:
    return {
        "BadRequest": _error("The body is not valid JSON, or the model could not score the rows."),
        "Unauthorized": {
            **_error("No key: send `Authorization: Bearer KEY`."),
            "headers": {"www-authenticate": {"description": 'Bearer realm="conveyor"', "schema": {"type": "string"}}},
        },
        "Forbidden": _error("The key is not valid for this endpoint (it may have been regenerated)."),
        "NotFound": _error("No such model, version or deployment."),
        "PayloadTooLarge": _error("The body is over the endpoint's size limit; send fewer rows per request."),
        "Unprocessable": _error("The request does not fit the signature; the message names the field."),
        "RateLimited": _error("Over the endpoint's request rate; retry after a moment.", retry=True),
        "Unavailable": _error("No deployment takes traffic, or the deployment's queue is full.", retry=True),
    }


def _json_response(description: str, schema_name: str, headers: JSON | None = None) -> JSON:
    response: JSON = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF + schema_name}}},
    }
    if headers:
        response["headers"] = headers
    return response


def _ref(kind: str, name: str) -> JSON:
    return {"$ref": f"#/components/{kind}/{name}"}


def _paths(keyed: bool) -> JSON:
    auth = {"401": _ref("responses", "Unauthorized"), "403": _ref("responses", "Forbidden")} if keyed else {}
    deployment = _ref("parameters", "Deployment")
    scored_by = {
        "conveyor-deployment": {
            "description": "The deployment that scored.",
            "required": True,
            "schema": {"type": "string"},
        },
        "conveyor-ignored-fields": {
            "description": "The request's fields (columns, tensors) that the model does not take and that were "
            "left out of scoring, comma-separated and percent-encoded; absent when there were none.",
            "required": False,
            "schema": {"type": "string"},
        },
    }
    scoring_errors = {
        "400": _ref("responses", "BadRequest"),
        **auth,
        "404": _ref("responses", "NotFound"),
        "413": _ref("responses", "PayloadTooLarge"),
        "422": _ref("responses", "Unprocessable"),
        "429": _ref("responses", "RateLimited"),
        "503": _ref("responses", "Unavailable"),
    }

    def public(summary: str, operation_id: str, schema: str, *, ready: bool = False) -> JSON:
        responses: JSON = {"200": _json_response("OK", schema)}
        if ready:
            responses["503"] = _json_response("Not ready (yet).", schema)
        # An empty list overrides the document's security: probes carry no key.
        operation = {"tags": [_PUBLIC_TAG], "summary": summary, "operationId": operation_id, "responses": responses}
        return {"get": operation | ({"security": []} if keyed else {})}

    def get(
        summary: str, operation_id: str, ok: JSON, *, errors: JSON | None = None, params: list[JSON] | None = None
    ) -> JSON:
        operation: JSON = {
            "tags": [_METADATA_TAG],
            "summary": summary,
            "operationId": operation_id,
            "responses": {"200": ok, **auth, **(errors or {})},
        }
        if params:
            operation["parameters"] = params
        return {"get": operation}

    def score(summary: str, operation_id: str, content: JSON, ok: JSON, params: list[JSON]) -> JSON:
        return {
            "post": {
                "tags": [_SCORING_TAG],
                "summary": summary,
                "operationId": operation_id,
                "parameters": params,
                "requestBody": {"required": True, "content": content},
                "responses": {"200": ok, **scoring_errors},
            }
        }

    name, version = _ref("parameters", "ModelName"), _ref("parameters", "ModelVersion")
    not_found = {"404": _ref("responses", "NotFound")}
    # The path's version and the conveyor-deployment header naming different deployments is a 400.
    conflict = {"400": _ref("responses", "BadRequest"), **not_found}
    v2_body = {"application/json": {"schema": {"$ref": _REF + "InferenceRequest"}}}
    v2_ok = _json_response("The model's outputs.", "InferenceResponse", scored_by)
    base = "/v2/models/{name}"
    ready_responses = {"503": _json_response("The model is not ready.", "ModelReady"), **not_found}
    return {
        "/": get("What the endpoint serves", "describe", _json_response("Deployments and routes.", "Description")),
        "/predict": score(
            "Score a list of records",
            "predict",
            {"application/json": {"schema": {"$ref": _REF + "PredictRequest"}}},
            _json_response("One prediction per record.", "PredictResponse", scored_by),
            [deployment],
        ),
        "/invocations": score(
            "Score with MLflow's scoring protocol",
            "invocations",
            {
                "application/json": {"schema": {"$ref": _REF + "MlflowRequest"}},
                "text/csv": {"schema": {"$ref": _REF + "MlflowCsv"}},
            },
            _json_response("One prediction per row.", "MlflowResponse", scored_by),
            [deployment],
        ),
        "/v2": get("Server metadata (Open Inference Protocol)", "v2_server", _json_response("OK", "ServerMetadata")),
        "/v2/health/live": public("Server live", "v2_live", "Live"),
        "/v2/health/ready": public("Server ready", "v2_ready", "Ready", ready=True),
        base: get("Model metadata", "v2_model", _json_response("OK", "ModelMetadata"), errors=not_found, params=[name]),
        base + "/ready": get(
            "Model ready",
            "v2_model_ready",
            _json_response("The model is ready.", "ModelReady"),
            errors=ready_responses,
            params=[name],
        ),
        base + "/infer": score("Inference (Open Inference Protocol)", "v2_infer", v2_body, v2_ok, [name, deployment]),
        base + "/versions/{version}": get(
            "Model version metadata",
            "v2_model_version",
            _json_response("OK", "ModelMetadata"),
            errors=conflict,
            params=[name, version, deployment],
        ),
        base + "/versions/{version}/ready": get(
            "Model version ready",
            "v2_model_version_ready",
            _json_response("The version is ready.", "ModelReady"),
            errors={**ready_responses, **conflict},
            params=[name, version, deployment],
        ),
        base + "/versions/{version}/infer": score(
            "Inference on one version (Open Inference Protocol)",
            "v2_infer_version",
            v2_body,
            v2_ok,
            [name, version, deployment],
        ),
        "/metrics": get(
            "Prometheus metrics",
            "metrics",
            {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            errors={"404": _error("Metrics are off for this endpoint.")},
        ),
        "/ping": public("Live (MLflow)", "ping", "Live"),
        "/health": public("Live (MLflow)", "health", "Live"),
        "/version": get(
            "Server version (MLflow)",
            "version",
            {"description": "The Conveyor version.", "content": {"application/json": {"schema": {"type": "string"}}}},
        ),
    }
