"""The OpenAPI document of an endpoint: valid OpenAPI 3.1, every route, schemas typed from the signature."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from conveyor.serve._openapi import endpoint_openapi
from conveyor.serve._spec import EndpointSpec, key_digest
from tests.serve.conftest import deployment_spec

SIGNATURE = {
    "inputs": [
        {"name": "signup_date", "type": "datetime", "required": True},
        {"name": "tenure", "type": "long", "required": True},
        {"name": "seats", "type": "integer", "required": False},
        {"name": "charges", "type": "double", "required": True},
        {"name": "ratio", "type": "float", "required": False},
        {"name": "autopay", "type": "boolean", "required": True},
        {"name": "plan", "type": "string", "required": True},
        {"name": "note", "type": "string", "required": False},
    ],
    "outputs": [{"name": "prediction", "type": "boolean", "required": True}],
}
ROUTES = {
    "/": {"get"},
    "/predict": {"post"},
    "/invocations": {"post"},
    "/v2": {"get"},
    "/v2/health/live": {"get"},
    "/v2/health/ready": {"get"},
    "/v2/models/{name}": {"get"},
    "/v2/models/{name}/ready": {"get"},
    "/v2/models/{name}/infer": {"post"},
    "/v2/models/{name}/versions/{version}": {"get"},
    "/v2/models/{name}/versions/{version}/ready": {"get"},
    "/v2/models/{name}/versions/{version}/infer": {"post"},
    "/metrics": {"get"},
    "/ping": {"get"},
    "/health": {"get"},
    "/version": {"get"},
}
PUBLIC = {"/v2/health/live", "/v2/health/ready", "/ping", "/health"}
SCORING = {"/predict", "/invocations", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"}


def _spec(
    auth: str = "key", signature: dict[str, Any] = SIGNATURE, strict: tuple[bool, bool] = (True, True)
) -> EndpointSpec:
    deployments = [
        deployment_spec("blue", 1, signature, 90, strict=strict[0]),
        deployment_spec("green", 2, signature, 10, strict=strict[1]),
    ]
    digests = [key_digest("k1"), key_digest("k2")] if auth == "key" else []
    return EndpointSpec(name="churn", revision=7, auth=auth, key_digests=digests, deployments=deployments)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    """Strict deployments: the document refuses fields the model does not take."""
    return endpoint_openapi(_spec())


def _validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    # The component wrapped with the document's components, so its $refs resolve as in the document.
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


@pytest.mark.parametrize("auth", ["key", "none"])
def test_the_document_is_valid_openapi_3_1(auth: str) -> None:
    import openapi_spec_validator as validator  # the dev extra installs it: never skipped

    document = endpoint_openapi(_spec(auth))
    assert document["openapi"].startswith("3.1")
    validator.validate(document)
    # What the route serves: plain JSON, no numpy or tuples.
    assert orjson.loads(orjson.dumps(document)) == document


def test_every_route_of_the_app_is_described(document: dict[str, Any]) -> None:
    assert {path: set(item) for path, item in document["paths"].items()} == ROUTES
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    assert document["info"]["version"] == "7"


def test_a_keyed_endpoint_needs_a_bearer_key_except_on_health_routes(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": document["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert document["security"] == [{"bearer": []}]
    for path, item in document["paths"].items():
        operation = next(iter(item.values()))
        if path in PUBLIC:
            assert operation["security"] == []
            assert "401" not in operation["responses"]
        else:
            assert "security" not in operation
            assert {"401", "403"} <= set(operation["responses"])


def test_an_open_endpoint_has_no_security() -> None:
    document = endpoint_openapi(_spec("none"))
    assert "security" not in document
    assert "securitySchemes" not in document["components"]
    assert all("401" not in op["responses"] for item in document["paths"].values() for op in item.values())


def test_scoring_routes_take_the_deployment_header(document: dict[str, Any]) -> None:
    header = document["components"]["parameters"]["Deployment"]
    assert header["name"] == "conveyor-deployment" and header["in"] == "header"
    assert header["schema"]["enum"] == ["blue", "green"]
    for path in SCORING:
        operation = document["paths"][path]["post"]
        assert {"$ref": "#/components/parameters/Deployment"} in operation["parameters"]
        assert operation["requestBody"]["required"] is True
        assert operation["responses"]["200"]["headers"]["conveyor-deployment"]["required"] is True
        assert {"400", "404", "413", "422", "429", "503"} <= set(operation["responses"])
    version = document["components"]["parameters"]["ModelVersion"]["schema"]["enum"]
    assert version == ["blue", "green", "1", "2"]
    assert document["components"]["parameters"]["ModelName"]["schema"]["enum"] == ["churn"]


def test_errors_have_the_error_body(document: dict[str, Any]) -> None:
    shared = document["components"]["responses"]
    for path, item in document["paths"].items():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                if "$ref" in response:
                    response = shared[response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                # A readiness probe answers 503 with its usual body, not an error.
                ready = path.endswith("ready") and status == "503"
                assert schema == ("Error" if not ready else "ModelReady" if "models" in path else "Ready"), path
    error = _validator(document, "Error")
    assert error.is_valid({"error": {"code": "invalid_spec", "message": "Field 'x' ..."}})
    assert error.is_valid({"error": "Field 'x' ...", "code": "invalid_spec"}), "the Open Inference Protocol's shape"
    assert not error.is_valid({"error": 3})
    assert not error.is_valid({"error": {"message": "no code"}})


def test_records_are_typed_from_the_signature(document: dict[str, Any]) -> None:
    record = document["components"]["schemas"]["Record"]
    assert record["required"] == ["signup_date", "tenure", "charges", "autopay", "plan"]
    assert record["additionalProperties"] is False
    properties = record["properties"]
    assert properties["tenure"]["type"] == "integer"
    assert properties["seats"]["type"] == ["integer", "null"]
    assert properties["charges"]["type"] == "number"
    assert properties["ratio"]["type"] == ["number", "null"]
    assert properties["autopay"]["type"] == "boolean"
    assert properties["signup_date"]["type"] == "string"
    assert "null" in properties["note"]["type"] and "null" not in properties["plan"]["type"]

    valid = _validator(document, "PredictRequest")
    row = {"signup_date": "2024-05-31", "tenure": 3, "charges": 9.5, "autopay": True, "plan": "pro"}
    assert valid.is_valid([row])
    assert valid.is_valid({"records": [row, {**row, "seats": None, "note": "x"}]})
    assert not valid.is_valid([])
    assert not valid.is_valid([{**row, "tenure": 3.5}])
    assert not valid.is_valid([{**row, "tenure": 2**63}])
    assert not valid.is_valid([{**row, "autopay": 1}])
    assert not valid.is_valid([{**row, "plan": None}])
    assert not valid.is_valid([{**row, "tenur": 3}])
    assert not valid.is_valid([{k: v for k, v in row.items() if k != "charges"}])


def test_mlflow_bodies_hold_exactly_one_input_key(document: dict[str, Any]) -> None:
    schema = document["components"]["schemas"]["MlflowRequest"]
    assert [variant["required"] for variant in schema["oneOf"]] == [
        ["dataframe_split"],
        ["dataframe_records"],
        ["instances"],
        ["inputs"],
    ]
    valid = _validator(document, "MlflowRequest")
    row = {"signup_date": "2024-05-31", "tenure": 3, "charges": 9.5, "autopay": True, "plan": "pro"}
    values = ["2024-05-31", 3, None, 9.5, None, True, "pro", None]
    assert valid.is_valid({"dataframe_records": [row]})
    assert valid.is_valid({"dataframe_split": {"columns": list(row), "data": [list(row.values())]}})
    assert valid.is_valid({"instances": [values], "params": {"x": 1}})
    assert valid.is_valid({"inputs": {"tenure": [1, 2], "plan": ["a", "b"]}})
    assert not valid.is_valid({"dataframe_records": [row], "instances": [values]})
    assert not valid.is_valid({"instances": [values[:3]]})
    assert not valid.is_valid({"dataframe_split": {"columns": ["tenure", "tenure"], "data": [[1, 2]]}})
    assert not valid.is_valid({"inputs": {"unknown": [1]}})
    content = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "text/csv"}


def test_v2_requests_follow_the_open_inference_protocol(document: dict[str, Any]) -> None:
    valid = _validator(document, "InferenceRequest")
    tensor = {"name": "tenure", "shape": [2], "datatype": "INT64", "data": [1, 2]}
    assert valid.is_valid({"inputs": [tensor]})
    assert valid.is_valid({"id": "1", "inputs": [{**tensor, "shape": [2, 1], "data": [[1], [2]]}], "outputs": None})
    assert valid.is_valid({"inputs": [tensor], "outputs": [{"name": "predict_proba"}], "parameters": {"a": 1}})
    assert not valid.is_valid({"inputs": []})
    assert not valid.is_valid({"inputs": [{**tensor, "datatype": "INT128"}]})
    assert not valid.is_valid({"inputs": [{**tensor, "shape": [0]}]})
    assert not valid.is_valid({"inputs": [{**tensor, "shape": [1, 1, 1]}]})
    assert not valid.is_valid({"inputs": [tensor], "outputs": [{"name": "logits"}]})
    assert not valid.is_valid({"inputs": [tensor], "parameters": 0})
    response = _validator(document, "InferenceResponse")
    assert response.is_valid(
        {
            "model_name": "churn",
            "model_version": "1",
            "outputs": [{"name": "predict", "shape": [1], "datatype": "BOOL", "data": [True]}],
        }
    )


@pytest.mark.parametrize("name", ["PredictRequest", "MlflowRequest", "MlflowCsv", "InferenceRequest", "Record"])
def test_the_examples_fit_their_schemas(document: dict[str, Any], name: str) -> None:
    schema = document["components"]["schemas"][name]
    validator = _validator(document, name)
    assert schema["examples"]
    for example in schema["examples"]:
        assert validator.is_valid(example), list(validator.iter_errors(example))


def test_a_model_without_signature_takes_any_records() -> None:
    document = endpoint_openapi(_spec("none", {"inputs": [], "outputs": []}))
    valid = _validator(document, "PredictRequest")
    assert valid.is_valid([{"anything": [1, {"x": 2}]}])
    assert not valid.is_valid([1])
    assert "examples" not in document["components"]["schemas"]["PredictRequest"]


@pytest.mark.parametrize("strict", [(False, False), (True, False)])
def test_unless_every_deployment_is_strict_the_document_lets_extra_fields_through(strict: tuple[bool, bool]) -> None:
    document = endpoint_openapi(_spec(strict=strict))
    record = document["components"]["schemas"]["Record"]
    assert record["additionalProperties"] is True and "conveyor-ignored-fields" in record["description"]
    row = {"signup_date": "2024-05-31", "tenure": 3, "charges": 9.5, "autopay": True, "plan": "pro"}
    predict = _validator(document, "PredictRequest")
    assert predict.is_valid([{**row, "id": {"any": ["value"]}, "ts": "2024-06-01T10:00:00Z"}])
    assert not predict.is_valid([{**row, "tenure": 3.5, "id": 1}]), "the inputs are still typed"
    assert not predict.is_valid([{"id": 1}]), "and required"
    mlflow = _validator(document, "MlflowRequest")
    assert mlflow.is_valid({"dataframe_split": {"columns": [*row, "id"], "data": [[*row.values(), 7]]}})
    assert mlflow.is_valid({"inputs": {"tenure": [1, 2], "id": [{"nested": 1}, None]}})
    assert not mlflow.is_valid({"inputs": {"tenure": [{"nested": 1}]}}), "a known column's values are still cells"
    headers = document["paths"]["/predict"]["post"]["responses"]["200"]["headers"]
    assert headers["conveyor-ignored-fields"]["required"] is False
    response = document["components"]["schemas"]["PredictResponse"]
    assert response["properties"]["ignored_fields"]["type"] == "array"
    assert "ignored_fields" not in response["required"]
