"""The data routes of the REST API: upload, ingest from a datastore, rows, SQL, datastores."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api_client import api_client


@pytest.fixture
def client(workspace):  # type: ignore[no-untyped-def]
    return api_client(workspace)


def test_upload_rows_and_sql(client) -> None:  # type: ignore[no-untyped-def]
    created = client.post("/api/v1/data/sales/versions?format=csv", content=b"region,amount\nn,1\ns,2\nn,3\n")
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1 and created.json()["rows"] == 3 and created.json()["created"] is True
    again = client.post("/api/v1/data/sales/versions?format=csv", content=b"region,amount\nn,1\ns,2\nn,3\n")
    assert again.json()["created"] is False
    rows = client.get("/api/v1/data/sales:1/rows", params={"limit": 2}).json()
    assert rows["rows"] == [{"region": "n", "amount": 1}, {"region": "s", "amount": 2}] and rows["truncated"]
    result = client.post(
        "/api/v1/data/sql", json={"query": "SELECT region, sum(amount) AS t FROM sales GROUP BY 1 ORDER BY 1"}
    )
    assert result.json()["rows"] == [{"region": "n", "t": 4}, {"region": "s", "t": 2}]
    assert result.json()["inputs"] == ["sales:1"]
    saved = client.post("/api/v1/data/sql", json={"query": "SELECT * FROM sales WHERE amount > 1", "save_as": "big"})
    assert saved.json()["name"] == "big" and saved.json()["rows"] == 2


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("post", "/api/v1/data/x/versions?format=xlsx", {"content": b"a"}, 400, "bad_input"),
        ("post", "/api/v1/data/x/versions?format=csv", {"content": b"a,b\n1,2,3\n"}, 422, "validation_failed"),
        ("post", "/api/v1/data/x/versions?format=csv", {"content": b""}, 400, "bad_input"),
        ("post", "/api/v1/data/-x/versions?format=csv", {"content": b"a\n1\n"}, 400, "invalid_reference"),
        ("post", "/api/v1/data/sql", {"json": {"query": "SELEC"}}, 400, "bad_input"),
        ("post", "/api/v1/data/sql", {"json": {"query": "SELECT * FROM nothing_here"}}, 404, "not_found"),
        ("post", "/api/v1/data/x/ingest", {"json": {"store": "nope", "path": "a.csv"}}, 404, "not_found"),
        ("get", "/api/v1/datastores/nope", {}, 404, "not_found"),
    ],
)
def test_bad_requests_are_4xx_with_a_reason(
    client, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:  # type: ignore[no-untyped-def,type-arg]
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert client.get("/api/v1/data").json() == [] or path.endswith("sql")


def test_datastores_and_ingest_from_one(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "in.csv").write_text("k\n1\n2\n")
    made = client.post("/api/v1/datastores", json={"name": "drop", "url": str(tmp_path)})
    assert made.status_code == 201 and made.json()["kind"] == "local"
    refused = client.post("/api/v1/datastores", json={"name": "db", "url": "postgresql://u:pw@h/d", "check": False})
    assert refused.status_code == 400 and "password" in refused.json()["error"]["message"]
    ingested = client.post("/api/v1/data/k/ingest", json={"store": "drop", "path": "in.csv"})
    assert ingested.status_code == 201 and ingested.json()["rows"] == 2
    assert [d["name"] for d in client.get("/api/v1/datastores").json()] == ["drop"]
    assert client.delete("/api/v1/datastores/drop").status_code == 204
    assert client.get("/api/v1/datastores").json() == []


def test_profile_and_diff(client) -> None:  # type: ignore[no-untyped-def]
    client.post("/api/v1/data/s/versions?format=csv", content=b"x,y\n1,a\n2,b\n")
    client.post("/api/v1/data/s/versions?format=csv", content=b"x,y,z\n1,a,1\n5,b,2\n9,c,3\n")
    profile = client.get("/api/v1/data/s:1/profile").json()
    assert profile["ref"] == "s:1" and profile["rows"] == 2 and profile["columns"]["x"]["mean"] == 1.5
    diff = client.get("/api/v1/data/s:1/diff/s:2").json()
    assert diff["schema"]["added"] == [{"name": "z", "type": "int64"}]
    assert diff["rows"] == {"a": 2, "b": 3, "change": 1, "relative": 0.5}
    assert client.get("/api/v1/data/s:9/profile").status_code == 404
