"""The serving app in-process: protocols, auth, routing by traffic and header, mirroring, limits, batching."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import numpy as np
import orjson
import pytest
from starlette.testclient import TestClient

from conveyor.serve._app import EndpointApp, Shared
from conveyor.serve._observe import AccessLog
from conveyor.serve._runtime import Batcher, LoadedDeployment, Overloaded
from conveyor.serve._spec import DeploymentSpec, EndpointSpec, key_digest
from tests.serve.conftest import deployment_spec

KEY, OTHER_KEY = "primary-key", "secondary-key"


class Counting:
    """Wraps a model and counts its calls and rows (to see batching and mirroring)."""

    def __init__(self, model: Any, offset: int = 0) -> None:
        self.model = model
        self.classes_ = model.classes_
        self.calls: list[int] = []
        self.offset = offset

    def predict(self, frame: Any) -> Any:
        self.calls.append(len(frame))
        return self.model.predict(frame) + self.offset

    def predict_proba(self, frame: Any) -> Any:
        self.calls.append(len(frame))
        return self.model.predict_proba(frame)


def _deployment(name: str, model: Any, signature: dict[str, Any], version: int, **batching: Any) -> LoadedDeployment:
    return LoadedDeployment(deployment_spec(name, version, signature, **batching), model, None, 0.01)


@pytest.fixture
def served(churn_training):  # type: ignore[no-untyped-def]
    result, signature, _ = churn_training
    blue = _deployment("blue", Counting(result.model), signature, 1)
    green = _deployment("green", Counting(result.model, offset=10), signature, 2)
    spec = EndpointSpec(
        name="churn",
        revision=1,
        auth="key",
        key_digests=[key_digest(KEY), key_digest(OTHER_KEY)],
        deployments=[blue.spec, green.spec],
        max_body_bytes=1024 * 1024,
    )
    shared = Shared([100, 0], [0, 0], lambda: spec.key_digests)
    lines: list[bytes] = []

    class Sink:
        def write(self, data: bytes) -> None:
            lines.extend(data.splitlines())

        def flush(self) -> None:
            pass

    access = AccessLog(Sink(), "churn")  # type: ignore[arg-type]
    app = EndpointApp(spec, [blue, green], shared, access_log=access)
    client = TestClient(app, headers={"Authorization": f"Bearer {KEY}"})
    return client, app, shared, blue, green, result.model, access, lines


@pytest.fixture
def records(churn_training) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return orjson.loads(churn_training[2].to_json(orient="records", date_format="iso"))  # type: ignore[no-any-return]


def test_predict_scores_records_and_names_the_deployment(served, records, churn_training) -> None:  # type: ignore[no-untyped-def]
    client, *_ = served
    response = client.post("/predict", json=records)
    assert response.status_code == 200, response.text
    expected = churn_training[0].model.predict(churn_training[2]).tolist()
    assert response.json() == {"predictions": expected, "model": "churn:1", "deployment": "blue"}
    assert response.headers["conveyor-deployment"] == "blue"
    assert response.headers["x-request-id"]
    assert client.post("/predict", json={"records": records}).json()["predictions"] == expected


def test_mlflow_invocations_in_every_input_format(served, records, churn_training) -> None:  # type: ignore[no-untyped-def]
    client, *_ = served
    frame = churn_training[2]
    expected = churn_training[0].model.predict(frame).tolist()
    split = orjson.loads(frame.to_json(orient="split", date_format="iso"))
    bodies = [
        {"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": records},
    ]
    for body in bodies:
        response = client.post("/invocations", json=body)
        assert response.status_code == 200, (body.keys(), response.text)
        assert response.json() == {"predictions": expected}
    both = client.post("/invocations", json={"inputs": records, "instances": records})
    assert both.status_code == 422


def test_open_inference_protocol_routes(served, records, churn_training) -> None:  # type: ignore[no-untyped-def]
    client, *_ = served
    model, frame = churn_training[0].model, churn_training[2]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get("/v2").json()["name"] == "conveyor"
    metadata = client.get("/v2/models/churn").json()
    assert metadata["name"] == "churn" and metadata["versions"] == ["1", "2"]
    assert {i["name"] for i in metadata["inputs"]} == {c for c in frame.columns}
    assert client.get("/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
    assert client.get("/v2/models/churn/versions/green/ready").status_code == 200
    inputs = []
    for column in metadata["inputs"]:
        values = [r[column["name"]] for r in records]
        inputs.append({"name": column["name"], "shape": [len(values)], "datatype": column["datatype"], "data": values})
    body = {"id": "req-7", "inputs": inputs}
    answer = client.post("/v2/models/churn/infer", json=body).json()
    assert answer["model_name"] == "churn" and answer["model_version"] == "1" and answer["id"] == "req-7"
    assert answer["outputs"][0]["name"] == "predict"
    assert answer["outputs"][0]["data"] == model.predict(frame).tolist()
    # A version in the path targets that deployment (by its name or its model version number).
    by_version = client.post("/v2/models/churn/versions/2/infer", json=body).json()
    assert by_version["model_version"] == "2"
    assert by_version["outputs"][0]["data"] == (model.predict(frame) + 10).tolist()
    proba = client.post(
        "/v2/models/churn/infer", json={**body, "outputs": [{"name": "predict"}, {"name": "predict_proba"}]}
    ).json()
    probabilities = np.asarray(proba["outputs"][1]["data"]).reshape(proba["outputs"][1]["shape"])
    np.testing.assert_allclose(probabilities, model.predict_proba(frame), rtol=1e-9)
    missing = client.post("/v2/models/nope/infer", json=body)
    # The Open Inference Protocol's error object: {"error": "<message>"} (the code beside it).
    assert missing.status_code == 404 and "serves the model 'churn'" in missing.json()["error"]
    assert missing.json()["code"] == "not_found"
    assert client.post("/v2/models/churn/versions/9/infer", json=body).status_code == 404


def test_auth_needs_a_valid_key_except_for_health(served, records) -> None:  # type: ignore[no-untyped-def]
    _, app, *_ = served
    anonymous = TestClient(app)
    response = anonymous.post("/predict", json=records)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer KEY" in response.json()["error"]["message"]
    wrong = anonymous.post("/predict", json=records, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "not valid" in wrong.json()["error"]["message"]
    assert anonymous.post("/predict", json=records, headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200
    assert anonymous.get("/v2/health/ready").status_code == 200
    assert anonymous.get("/v2/models/churn").status_code == 401


def test_traffic_weights_route_and_change_live(served, records) -> None:  # type: ignore[no-untyped-def]
    client, _, shared, *_ = served
    assert {client.post("/predict", json=records[:1]).json()["deployment"] for _ in range(20)} == {"blue"}
    shared.weights[0], shared.weights[1] = 0, 100
    assert {client.post("/predict", json=records[:1]).json()["deployment"] for _ in range(20)} == {"green"}
    shared.weights[0], shared.weights[1] = 50, 50
    seen = [client.post("/predict", json=records[:1]).json()["deployment"] for _ in range(200)]
    assert 60 < seen.count("blue") < 140
    shared.weights[0], shared.weights[1] = 0, 0
    none = client.post("/predict", json=records[:1])
    assert none.status_code == 503 and none.headers["retry-after"] == "1"
    assert "endpoints traffic churn" in none.json()["error"]["message"]


def test_the_deployment_header_targets_one_deployment(served, records) -> None:  # type: ignore[no-untyped-def]
    client, *_ = served
    response = client.post("/predict", json=records, headers={"conveyor-deployment": "green"})
    assert response.json()["deployment"] == "green"
    unknown = client.post("/predict", json=records, headers={"conveyor-deployment": "gren"})
    assert unknown.status_code == 404
    assert re.search(r"no deployment 'gren'.*Did you mean 'green'", unknown.json()["error"]["message"])


def test_mirrored_requests_reach_the_shadow_but_not_the_answer(served, records, churn_training) -> None:  # type: ignore[no-untyped-def]
    client, _, shared, _, green, model, *_ = served
    shared.mirror[1] = 100
    expected = model.predict(churn_training[2]).tolist()
    for _ in range(5):
        body = client.post("/predict", json=records).json()
        assert body["predictions"] == expected and body["deployment"] == "blue"
    # The shadow scores after the answer: wait for it with a deadline.
    import time

    deadline = time.monotonic() + 5
    while sum(green.model.calls) < 5 * len(records) and time.monotonic() < deadline:
        client.get("/v2/health/live")
    assert sum(green.model.calls) == 5 * len(records)
    shared.mirror[1] = 0
    client.post("/predict", json=records)
    assert sum(green.model.calls) == 5 * len(records)


def test_size_limit_and_methods(served) -> None:  # type: ignore[no-untyped-def]
    client, *_ = served
    big = b"[" + b" " * (1024 * 1024 + 1) + b"]"
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "limit of 1048576 bytes" in response.json()["error"]["message"]
    assert client.get("/predict").status_code == 405
    assert client.delete("/v2/models/churn").status_code == 405
    assert client.get("/nope").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 422, "."),
        (b'"text"', 422, "."),
        (b"[1, 2]", 422, "."),
        (b'[{"tenure_months": Infinity}]', 400, "not valid JSON"),
        (b'[{"tenure_mnths": 3}]', 422, "tenure_mnths"),
    ],
)
def test_bad_bodies_get_a_4xx_naming_the_problem(served, body, status, fragment) -> None:  # type: ignore[no-untyped-def]
    client, *_ = served
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert re.search(fragment, response.json()["error"]["message"])


def test_access_log_records_each_request(served, records) -> None:  # type: ignore[no-untyped-def]
    client, _, _, _, _, _, access, lines = served
    client.post("/predict", json=records, headers={"x-request-id": "abc-1"})
    client.post("/predict", content=b"{", headers={"content-type": "application/json"})
    access.flush()
    logged = [orjson.loads(line) for line in lines]
    first = next(r for r in logged if r["id"] == "abc-1")
    assert first["status"] == 200 and first["deployment"] == "blue" and first["path"] == "/predict"
    assert any(r["status"] == 400 and r["deployment"] == "blue" for r in logged), "refusals name the deployment"


def test_the_batcher_scores_concurrent_requests_in_one_call(churn_training, records) -> None:  # type: ignore[no-untyped-def]
    from conveyor.serve._protocols import records_to_columns

    result, signature, frame = churn_training
    counting = Counting(result.model)
    deployment = _deployment("blue", counting, signature, 1, max_batch_size=64, max_queue=8)
    batcher: Batcher = deployment.batcher
    columns = records_to_columns(records, signature)

    async def burst(n: int) -> list[Any]:
        futures = [batcher.submit(columns, len(records), False) for _ in range(n)]
        return list(await asyncio.gather(*futures))

    scored = asyncio.run(burst(8))
    assert counting.calls == [8 * len(records)]
    expected = result.model.predict(frame)
    for s in scored:
        np.testing.assert_array_equal(s.predictions, expected)

    async def overflow() -> None:
        futures = [batcher.submit(columns, len(records), False) for _ in range(8)]
        with pytest.raises(Overloaded, match="requests waiting"):
            batcher.submit(columns, len(records), False)
        await asyncio.gather(*futures)

    asyncio.run(overflow())


def test_one_bad_request_does_not_fail_its_batch_neighbours(churn_training, records) -> None:  # type: ignore[no-untyped-def]
    from conveyor.errors import BadInput
    from conveyor.serve._protocols import records_to_columns

    result, signature, _ = churn_training

    class Picky(Counting):
        def predict(self, frame: Any) -> Any:
            if (frame["tenure_months"] < 0).any():
                raise ValueError("tenure_months must not be negative")
            return super().predict(frame)

    deployment = _deployment("blue", Picky(result.model), signature, 1)
    good = records_to_columns(records, signature)
    bad = records_to_columns([{**records[0], "tenure_months": -5}], signature)

    async def mixed() -> list[Any]:
        futures = [deployment.batcher.submit(c, len(next(iter(c.values()))), False) for c in (good, bad, good)]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    outcomes = asyncio.run(mixed())
    assert isinstance(outcomes[1], BadInput) and "must not be negative" in outcomes[1].message
    assert len(outcomes[0].predictions) == len(records) and len(outcomes[2].predictions) == len(records)


@pytest.fixture(scope="module")
def numeric() -> tuple[Any, dict[str, Any], Any]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from conveyor.registry import infer_signature

    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    return model, infer_signature(x.head(5), model.predict(x.head(5))), x


def test_all_float_records_take_the_matrix_path_with_the_same_answers(numeric) -> None:  # type: ignore[no-untyped-def]
    from conveyor.serve._protocols import records_to_columns

    model, signature, x = numeric
    deployment = _deployment("blue", model, signature, 1)
    assert deployment.all_float
    records = orjson.loads(x.head(7).to_json(orient="records"))
    matrix = deployment.records_matrix(records)
    assert matrix is not None and matrix.shape == (7, x.shape[1])
    columns = records_to_columns(records, signature)
    assert deployment.positional, "a pipeline fitted on these columns takes the matrix as it is"
    np.testing.assert_allclose(
        deployment.score(matrix, True).probabilities, deployment.score(columns, True).probabilities, rtol=1e-12
    )
    np.testing.assert_array_equal(deployment.score(matrix, False).predictions, model.predict(x.head(7)))
    first = records[0]
    name = next(iter(first))
    # Anything but plain finite numbers for exactly the signature's fields leaves the fast path, so the full
    # decoder can refuse it with its message (or accept it, as with a missing optional field).
    for odd in (
        [{**first, name: True}],
        [{**first, name: "1.5"}],
        [{**first, name: None}],
        [{**first, "extra": 1.0}],
        [{k: v for k, v in first.items() if k != name}],
        [{**first, name: 1e400}],
        [first, [1, 2]],
        {"records": [first]},
    ):
        assert deployment.records_matrix(odd) is None


def test_matrix_and_column_requests_batch_together(numeric) -> None:  # type: ignore[no-untyped-def]
    from conveyor.serve._protocols import records_to_columns

    model, signature, x = numeric
    counting = Counting(model)
    deployment = _deployment("blue", counting, signature, 1)
    records = orjson.loads(x.head(3).to_json(orient="records"))
    matrix = deployment.records_matrix(records)
    columns = records_to_columns(records, signature)

    async def both() -> list[Any]:
        return list(
            await asyncio.gather(
                deployment.batcher.submit(matrix, 3, False), deployment.batcher.submit(columns, 3, False)
            )
        )

    first, second = asyncio.run(both())
    assert counting.calls == [6]
    np.testing.assert_array_equal(first.predictions, second.predictions)


def test_an_onnx_export_with_its_classes_serves_without_loading_the_model(numeric) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from conveyor.registry._onnx import convert
    from conveyor.serve._runtime import load_deployment
    from conveyor.serve._spec import OnnxSpec

    model, signature, x = numeric
    conversion = convert(model, x, "cancer:1")
    digest = hashlib.sha256(conversion.data).hexdigest()
    onnx = OnnxSpec(digest, conversion.inputs, conversion.outputs, conversion.kind, None, model.classes_.tolist())
    spec = DeploymentSpec(
        name="blue",
        model="cancer:1",
        model_name="cancer",
        model_version=1,
        model_version_id="id",
        format="skops",
        digest="never-read",
        trusted_types=[],
        signature=signature,
        onnx=onnx,
    )
    blobs = {digest: conversion.data}
    loaded = load_deployment(spec, lambda d, what: blobs[d])
    assert loaded.model is None and loaded.engine == "onnx" and loaded.has_proba
    matrix = loaded.records_matrix(orjson.loads(x.head(9).to_json(orient="records")))
    assert matrix is not None
    scored = loaded.score(matrix, True)
    np.testing.assert_array_equal(scored.predictions, model.predict(x.head(9)))
    np.testing.assert_allclose(scored.probabilities, model.predict_proba(x.head(9)), atol=1e-5)
    assert scored.classes == [0, 1]


# --- fields the model does not take ---------------------------------------------------------------------------


def test_extra_fields_are_scored_without_and_named_on_every_route(served, records, churn_training) -> None:  # type: ignore[no-untyped-def]
    client, _, _, _, _, model, access, lines = served
    expected = model.predict(churn_training[2]).tolist()
    # An id, a timestamp and a name that needs escaping in a header.
    tagged = [{**r, "id": i, "ts": "2024-06-01T10:00:00Z", "note, é": None} for i, r in enumerate(records)]
    predict = client.post("/predict", json=tagged, headers={"x-request-id": "extra-1"})
    assert predict.status_code == 200, predict.text
    assert predict.json()["predictions"] == expected
    assert predict.json()["ignored_fields"] == ["id", "ts", "note, é"]
    assert predict.headers["conveyor-ignored-fields"] == "id, ts, note%2C%20%C3%A9"

    invocations = client.post("/invocations", json={"dataframe_records": tagged})
    assert invocations.status_code == 200, invocations.text
    assert invocations.json() == {"predictions": expected}, "MLflow's response keeps its shape"
    assert invocations.headers["conveyor-ignored-fields"] == "id, ts, note%2C%20%C3%A9"
    names = list(records[0])
    csv_lines = ["request," + ",".join(names)] + [
        f"r{i}," + ",".join(_csv_cell(r.get(n)) for n in names) for i, r in enumerate(records)
    ]
    csv_answer = client.post("/invocations", content="\n".join(csv_lines) + "\n", headers={"content-type": "text/csv"})
    assert csv_answer.status_code == 200, csv_answer.text
    assert csv_answer.headers["conveyor-ignored-fields"] == "request"

    tensors = [
        {"name": n, "shape": [len(records)], "datatype": "BYTES", "data": [str(r.get(n)) for r in records]}
        for n in ("trace_id",)
    ]
    frame = churn_training[2]
    for name in frame.columns:
        kind = frame[name].dtype.kind
        values = [None if v is None or v != v else v for v in frame[name].tolist()]
        datatype = "FP64" if kind == "f" else "INT64" if kind in "iu" else "BOOL" if kind == "b" else "BYTES"
        if datatype == "BYTES":
            values = [r[name] for r in records]
        tensors.append({"name": name, "shape": [len(records)], "datatype": datatype, "data": values})
    v2 = client.post("/v2/models/churn/infer", json={"inputs": tensors})
    assert v2.status_code == 200, v2.text
    assert set(v2.json()) <= {"model_name", "model_version", "id", "parameters", "outputs"}, "OIP response unchanged"
    assert v2.json()["outputs"][0]["data"] == expected
    assert v2.headers["conveyor-ignored-fields"] == "trace_id"

    plain = client.post("/predict", json=records)
    assert "conveyor-ignored-fields" not in plain.headers and "ignored_fields" not in plain.json()
    access.flush()
    logged = next(orjson.loads(line) for line in lines if orjson.loads(line)["id"] == "extra-1")
    assert logged["ignored"] == ["id", "ts", "note, é"]


def test_a_strict_deployment_refuses_extra_fields(churn_training, records) -> None:  # type: ignore[no-untyped-def]
    result, signature, _ = churn_training
    strict = LoadedDeployment(deployment_spec("blue", 1, signature, 100, strict=True), result.model, None, 0.01)
    spec = EndpointSpec(name="churn", revision=1, auth="none", key_digests=[], deployments=[strict.spec])
    client = TestClient(EndpointApp(spec, [strict], Shared([100], [0], lambda: [])))
    refused = client.post("/predict", json=[{**records[0], "id": 1}])
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith("Unknown field 'id' in the request; the model takes: ")
    refused = client.post("/invocations", json={"dataframe_records": [{**records[0], "id": 1}]})
    assert refused.status_code == 422 and "Unknown field 'id'" in refused.json()["error"]["message"]
    assert client.post("/predict", json=records[:1]).status_code == 200


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else str(value)
