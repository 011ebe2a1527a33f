"""Version numbers no version can have (2^63, twenty digits) are a clean 400, never an overflow (issue 10)."""

from __future__ import annotations

import pytest

from conveyor.errors import InvalidReference
from tests.api_client import api_client


@pytest.fixture
def registered(workspace, churn, conveyor_pipeline):  # type: ignore[no-untyped-def]
    x, _ = churn
    with workspace.runs.start("churn") as run:
        workspace.models.log_model(run.id, conveyor_pipeline, input_example=x)
    workspace.models.register_from_run(run.id, name="churn")
    return workspace


def test_huge_versions_are_invalid_references(registered) -> None:  # type: ignore[no-untyped-def]
    client = api_client(registered)
    for version in (2**31, 2**63, 2**64 + 1, 10**30):
        with pytest.raises(InvalidReference, match=f"'churn:{version}': version {version} is out of range"):
            registered.models.set_alias("churn", "champion", version)
        response = client.put("/api/v1/models/churn/aliases/champion", json={"version": version})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_reference"
        assert "out of range" in response.json()["error"]["message"]
    for ref in ("churn:99999999999999999999", "churn:9223372036854775808", "churn:" + "9" * 5000):
        with pytest.raises(InvalidReference, match="out of range"):
            registered.models.get(ref)
        for path in (f"/api/v1/models/{ref}", f"/api/v1/data/{ref}"):
            response = client.get(path)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["error"]["code"] == "invalid_reference"
    largest = client.get("/api/v1/models/churn:2147483647")
    assert largest.status_code == 404 and "has no version 2147483647" in largest.json()["error"]["message"]
    assert client.put("/api/v1/models/churn/aliases/champion", json={"version": 1}).status_code == 200
