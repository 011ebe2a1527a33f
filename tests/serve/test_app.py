"""The serving app: predictions for valid rows, a 4xx naming the field for everything else."""

from __future__ import annotations

import json

import orjson
import pytest
from starlette.testclient import TestClient

from conveyor.serve._app import MAX_BODY_BYTES, ServedModel, create_endpoint_app


@pytest.fixture
def client(churn_training):  # type: ignore[no-untyped-def]
    result, signature, _ = churn_training
    served = ServedModel("churn", "blue", "churn:1", result.model, signature)
    return TestClient(create_endpoint_app(served))


@pytest.fixture
def records(churn_training) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return orjson.loads(churn_training[2].to_json(orient="records", date_format="iso"))


def test_predict_scores_raw_records(client, records, churn_training) -> None:  # type: ignore[no-untyped-def]
    response = client.post("/predict", json=records)
    assert response.status_code == 200
    body = response.json()
    expected = churn_training[0].model.predict(churn_training[2]).tolist()
    assert body == {"predictions": expected, "model": "churn:1"}
    assert client.post("/predict", json={"records": records}).json()["predictions"] == expected


def test_optional_columns_may_be_null_or_absent(client, records) -> None:  # type: ignore[no-untyped-def]
    row = dict(records[0])
    row["satisfaction_score"] = None
    del row["total_charges"]
    assert client.post("/predict", json=[row]).status_code == 200


def test_health_and_info(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json()["ready"] is True
    info = client.get("/").json()
    assert info["model"] == "churn:1" and info["deployment"] == "blue"


def _mutate(records: list[dict[str, object]], **changes: object) -> list[dict[str, object]]:
    row = {**records[0], **changes}
    return [{k: v for k, v in row.items() if v != "<drop>"}]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 422, "non-empty JSON list"),
        (b'"text"', 422, "non-empty JSON list"),
        (b"[1, 2]", 422, "non-empty JSON list"),
        ("drop:tenure_months", 422, "'tenure_months' is required"),
        ("set:tenure_months=twelve", 422, "'tenure_months' in record 0 must be a number"),
        ("set:has_autopay=3", 422, "'has_autopay' in record 0 must be true or false"),
        ("set:plan={}", 422, "'plan' in record 0 must be text"),
        ("set:signup_date=last tuesday", 422, "'signup_date' in record 0 must be an ISO-8601 date"),
        ("set:signup_date=20240101", 422, "'signup_date' in record 0 must be an ISO-8601 date"),
        ("set:tenure_mnths=3", 422, "Unknown field 'tenure_mnths'.*Did you mean 'tenure_months'"),
        (b'[{"tenure_months": Infinity}]', 400, "not valid JSON"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(client, records, body, status, fragment) -> None:  # type: ignore[no-untyped-def]
    if isinstance(body, str):
        action, _, spec = body.partition(":")
        if action == "drop":
            payload = _mutate(records, **{spec: "<drop>"})
        else:
            key, _, value = spec.partition("=")
            payload = _mutate(records, **{key: json.loads(value) if value[:1] in "{[0123456789" else value})
        body = json.dumps(payload).encode()
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    import re

    assert re.search(fragment, response.json()["error"]["message"])


def test_oversized_bodies_are_refused(client) -> None:  # type: ignore[no-untyped-def]
    big = b"[" + b" " * (MAX_BODY_BYTES + 1) + b"]"
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "over 10 MB" in response.json()["error"]["message"]
