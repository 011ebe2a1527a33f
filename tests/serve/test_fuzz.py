"""Fuzz the endpoint app from its own OpenAPI document (schemathesis, in process, no server).

Every operation gets schema-valid (positive) and schema-invalid (negative) requests, with and without the
key. What must hold: no 5xx, every status and body is one the document lists, and whatever the document
refuses, the endpoint refuses too (the request schemas are a superset of what the decoders take). The
reverse does not hold by design (a V2 tensor's data must match its shape, which JSON Schema cannot say),
so ``positive_data_acceptance`` is not checked.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

import numpy as np
import orjson
import pytest
import schemathesis
from schemathesis.generation import GenerationMode

from conveyor.registry import infer_signature
from conveyor.serve._app import EndpointApp, Shared
from conveyor.serve._openapi import endpoint_openapi
from conveyor.serve._runtime import LoadedDeployment
from conveyor.serve._spec import EndpointSpec, key_digest
from tests.fuzzing import _node_id_for_schemathesis, checks  # noqa: F401 - the fixture applies here
from tests.serve.conftest import deployment_spec

Scope = MutableMapping[str, Any]

# Extreme values the fuzzer sends overflow the scaler (the prediction is still made); that is not a finding.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")

KEY = "k1"
# A short pass in make test; make fuzz sets CONVEYOR_FUZZ_EXAMPLES for a long one.
MAX_EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "10"))
# A request that never answers (a model call whose error escapes the batcher) must fail the run, not hang it.
TIMEOUT_S = 10.0


class WithOpenAPI:
    """The endpoint app plus ``GET /openapi.json``, as the real route will serve it."""

    def __init__(self, app: EndpointApp) -> None:
        self.app = app
        self.document = orjson.dumps(endpoint_openapi(app.spec))

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/openapi.json":
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self.document)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": self.document})
            return
        await self.app(scope, receive, send)


def _schema(app: EndpointApp) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", WithOpenAPI(app))
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        deterministic=True,  # derandomized: the same requests on every run, so a failure reproduces
        database="none",
    )
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    return schema


@pytest.fixture(scope="module")
def churn_app(churn_training) -> EndpointApp:  # type: ignore[no-untyped-def]
    """The churn model (dates, text, numbers, optional inputs) behind two deployments and a key; they ignore
    fields the model does not take (the default), so the document lets them through."""
    result, signature, _ = churn_training
    specs = [deployment_spec("blue", 1, signature, 70), deployment_spec("green", 2, signature, 30)]
    spec = EndpointSpec(
        name="churn", revision=3, auth="key", key_digests=[key_digest(KEY), key_digest("k2")], deployments=specs
    )
    loaded = [LoadedDeployment(s, result.model, None, 0.0) for s in specs]
    return EndpointApp(spec, loaded, Shared([70, 30], [0, 0], lambda: spec.key_digests))


@pytest.fixture(scope="module")
def cancer_app() -> EndpointApp:
    """A pure-numeric model (one V2 matrix tensor fits all inputs), with no key, strict about extra fields."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frame, target = load_breast_cancer(return_X_y=True, as_frame=True)
    frame = frame.iloc[:, :6]  # a handful of inputs keeps generated rows small and the run fast
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(frame, target)
    signature = infer_signature(frame, model.predict(frame))
    spec_ = deployment_spec("main", 4, signature, 100, strict=True)  # the churn app fuzzes lenient deployments
    spec = EndpointSpec(name="cancer", revision=1, auth="none", key_digests=[], deployments=[spec_])
    return EndpointApp(spec, [LoadedDeployment(spec_, model, None, 0.0)], Shared([100], [0], lambda: []))


@pytest.fixture(scope="module")
def churn_schema(churn_app: EndpointApp) -> Any:
    return _schema(churn_app)


@pytest.fixture(scope="module")
def cancer_schema(cancer_app: EndpointApp) -> Any:
    return _schema(cancer_app)


@pytest.fixture(scope="module")
def churn_schema_no_key(churn_app: EndpointApp) -> Any:
    schema = _schema(churn_app)
    # Without a key every request but the health checks is refused before its body is read: a few examples per
    # operation show the 401s. Generating Authorization values would defeat the point (they get 403s).
    schema.config.generation.update(max_examples=5, with_security_parameters=False)
    schema.config.phases.update(phases=["examples", "fuzzing"])
    return schema


churn = schemathesis.pytest.from_fixture("churn_schema")
cancer = schemathesis.pytest.from_fixture("cancer_schema")
churn_no_key = schemathesis.pytest.from_fixture("churn_schema_no_key")


@pytest.mark.slow
@churn.parametrize()
def test_fuzz_churn_with_key(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {KEY}"}, checks=checks(), timeout=TIMEOUT_S)


@pytest.mark.slow
@churn_no_key.parametrize()
def test_fuzz_churn_without_key(case: Any) -> None:
    response = case.call_and_validate(checks=checks(), timeout=TIMEOUT_S)
    public = case.operation.path in ("/v2/health/live", "/v2/health/ready", "/ping", "/health")
    assert response.status_code != 401 if public else response.status_code == 401, case.as_curl_command()


@pytest.mark.slow
@cancer.parametrize()
def test_fuzz_numeric_without_auth(case: Any) -> None:
    case.call_and_validate(checks=checks(), timeout=TIMEOUT_S)


def test_examples_in_the_document_are_scored(churn_app: EndpointApp, cancer_app: EndpointApp) -> None:
    """The document's request examples are real requests: each one scores (the fuzzer's positive baseline)."""
    from starlette.testclient import TestClient

    for app in (churn_app, cancer_app):
        document = endpoint_openapi(app.spec)
        schemas = document["components"]["schemas"]
        client = TestClient(app)
        headers = {"Authorization": f"Bearer {KEY}"}
        name = app.spec.name
        for path, body in [
            ("/predict", schemas["PredictRequest"]["examples"][0]),
            ("/invocations", schemas["MlflowRequest"]["examples"][0]),
            (f"/v2/models/{name}/infer", schemas["InferenceRequest"]["examples"][0]),
        ]:
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 200, (path, response.text)
        csv = schemas["MlflowCsv"]["examples"][0]
        response = client.post("/invocations", content=csv, headers={**headers, "content-type": "text/csv"})
        assert response.status_code == 200, response.text
        assert np.asarray(response.json()["predictions"]).shape == (1,)


def _v2_with(body: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    body = orjson.loads(orjson.dumps(body))
    if where == "request":
        body["parameters"] = value
    elif where == "tensor":
        body["inputs"][0]["parameters"] = value
    else:
        body["outputs"] = [{"name": "predict", "parameters": value}]
    return body


@pytest.mark.parametrize(
    ("where", "value"),
    [("request", 0), ("request", ""), ("tensor", False), ("tensor", []), ("output", [None, None]), ("output", 1)],
)
def test_found_by_fuzzing_v2_parameters_must_be_objects(churn_app: EndpointApp, where: str, value: Any) -> None:
    """Falsy non-objects slipped past `parameters or {}`, and output parameters were not checked at all."""
    from starlette.testclient import TestClient

    example = endpoint_openapi(churn_app.spec)["components"]["schemas"]["InferenceRequest"]["examples"][0]
    client = TestClient(churn_app, headers={"Authorization": f"Bearer {KEY}"})
    assert client.post("/v2/models/churn/infer", json=_v2_with(example, where, None)).status_code == 200
    response = client.post("/v2/models/churn/infer", json=_v2_with(example, where, value))
    assert response.status_code == 422, response.text
    assert "'parameters'" in response.json()["error"]  # the Open Inference Protocol's error is the message


def test_found_by_fuzzing_integers_below_int64_are_refused(churn_app: EndpointApp) -> None:
    """orjson reads -2**63 - 1 as the float -2**63, which passed the int64 range check."""
    from starlette.testclient import TestClient

    record = endpoint_openapi(churn_app.spec)["components"]["schemas"]["Record"]["examples"][0]
    client = TestClient(churn_app, headers={"Authorization": f"Bearer {KEY}"})
    body = orjson.dumps([record]).replace(b'"devices":1', b'"devices":-9223372036854775809')
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert "'devices'" in response.json()["error"]["message"]
    exact = orjson.dumps([record]).replace(b'"devices":1', b'"devices":-9223372036854775808')
    assert client.post("/predict", content=exact, headers={"content-type": "application/json"}).status_code == 200
