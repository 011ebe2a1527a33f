"""Datastores and ingestion from them: folders, HTTP, PostgreSQL and MariaDB, whole and incremental."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.errors import BadInput, Conflict, NotFound, StoreUnavailable
from tests.conftest import free_port, http_ok, require_service, wait_until

MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
START = dt.datetime(2024, 1, 1)


@pytest.fixture(params=["postgres", "mariadb"])
def database(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``(SQLAlchemy URL, table name)`` of a fresh ``orders`` table on each real database server."""
    if request.param == "postgres":
        url = str(request.getfixturevalue("postgres_url"))
    else:
        require_service("MariaDB", "127.0.0.1", 3306)
        url = MARIADB_URL
    table = f"orders_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, customer VARCHAR(40), amount NUMERIC(10, 2), "
                "updated_at TIMESTAMP NOT NULL)"
            )
        )
    try:
        yield url, table
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def insert(url: str, table: str, first: int, last: int) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"INSERT INTO {table} (id, customer, amount, updated_at) VALUES (:id, :c, :a, :t)"),
            [
                {"id": i, "c": f"c{i % 7}", "a": i * 1.25, "t": START + dt.timedelta(minutes=i)}
                for i in range(first, last + 1)
            ],
        )
    engine.dispose()


def plain(url: str) -> str:
    """The URL as a datastore takes it (no driver suffix needed)."""
    return url.replace("+psycopg", "").replace("mysql+pymysql", "mysql")


def test_full_query_ingestion_and_unchanged_rerun(workspace, database: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    url, table = database
    insert(url, table, 1, 250)
    workspace.datastores.add("db", plain(url))
    query = f"SELECT id, customer, amount FROM {table} ORDER BY id"
    first = workspace.data.ingest(name="orders", store="db", query=query)
    assert first.created and first.version.rows == 250
    frame = workspace.data.read_table(first.version).to_pylist()
    assert frame[0] == {"id": 1, "customer": "c1", "amount": 1.25}
    assert first.version.source["kind"] == "sql" and first.version.source["store"] == "db"
    again = workspace.data.ingest(name="orders", store="db", query=query)
    assert again.created is False and again.version.version == 1


@pytest.mark.parametrize("column", ["id", "updated_at"])
def test_incremental_ingestion_appends_only_new_rows(workspace, database: tuple[str, str], column: str) -> None:  # type: ignore[no-untyped-def]
    url, table = database
    insert(url, table, 1, 100)
    workspace.datastores.add("db", plain(url))
    query = f"SELECT * FROM {table}"
    first = workspace.data.ingest(name="orders", store="db", query=query, incremental_column=column)
    assert first.version.rows == 100
    insert(url, table, 101, 130)
    second = workspace.data.ingest(name="orders", store="db", query=query, incremental_column=column)
    assert second.created
    assert second.version.rows == 130
    assert "30 rows read" in second.notes
    assert second.version.files[0] == first.version.files[0], "the first part is kept, not rewritten"
    assert len(second.version.files) == 2
    ids = [r["id"] for r in workspace.data.read_table(second.version).to_pylist()]
    assert sorted(ids) == list(range(1, 131)) and len(set(ids)) == 130
    idle = workspace.data.ingest(name="orders", store="db", query=query, incremental_column=column)
    assert idle.created is False and idle.version.version == 2
    assert any("no new rows past" in note for note in idle.notes)


def test_query_errors_are_explained(workspace, database: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    url, table = database
    insert(url, table, 1, 5)
    workspace.datastores.add("db", plain(url))
    with pytest.raises(BadInput, match="The query failed"):
        workspace.data.ingest(name="x", store="db", query=f"SELEC * FROM {table}")
    with pytest.raises(BadInput, match="The query failed"):
        workspace.data.ingest(name="x", store="db", query="SELECT * FROM no_such_table_here")
    with pytest.raises(BadInput, match="Is 'updated' a column"):
        workspace.data.ingest(name="x", store="db", query=f"SELECT * FROM {table}", incremental_column="updated")
    with pytest.raises(BadInput, match="returned no rows"):
        workspace.data.ingest(name="x", store="db", query=f"SELECT * FROM {table} WHERE id < 0")
    assert workspace.data.list() == []


def test_datastore_rules(workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match="carries a password"):
        workspace.datastores.add("db", "postgresql://app:hunter2@127.0.0.1/db", check=False)
    with pytest.raises(BadInput, match="must be a reference such as 'env:VARIABLE'"):
        workspace.datastores.add(
            "db", "postgresql://app@127.0.0.1/db", credentials={"password": "hunter2"}, check=False
        )
    with pytest.raises(StoreUnavailable, match=r"Cannot reach datastore 'down' at postgresql://app@127.0.0.1:1/db"):
        workspace.datastores.add("down", "postgresql://app@127.0.0.1:1/db")
    with pytest.raises(BadInput, match=r"Datastore 'gone' points at .*missing-folder, which is missing"):
        workspace.datastores.add("gone", str(tmp_path / "missing-folder"))
    workspace.datastores.add("lake", str(tmp_path))
    with pytest.raises(Conflict, match="exists"):
        workspace.datastores.add("lake", str(tmp_path))
    with pytest.raises(NotFound, match="Did you mean 'lake'"):
        workspace.datastores.get("lak")
    monkeypatch.delenv("CONVEYOR_TEST_PW", raising=False)
    workspace.datastores.add(
        "pw",
        "postgresql://postgres@127.0.0.1:5432/postgres",
        credentials={"password": "env:CONVEYOR_TEST_PW"},
        check=False,
    )
    with pytest.raises(BadInput, match="CONVEYOR_TEST_PW, which is not set"):
        workspace.data.ingest(name="x", store="pw", query="SELECT 1 AS a")
    assert [s.name for s in workspace.datastores.list()] == ["lake", "pw"]
    workspace.datastores.remove("pw")
    assert [s.name for s in workspace.datastores.list()] == ["lake"]


def test_files_from_a_folder_datastore_and_over_http(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    served = tmp_path / "served"
    (served / "sub").mkdir(parents=True)
    (served / "sub" / "a.csv").write_text("x,y\n1,2\n3,4\n")
    workspace.datastores.add("folder", str(served))
    from_folder = workspace.data.ingest("sub/a.csv", name="a", store="folder")
    assert from_folder.version.rows == 2
    assert from_folder.version.source == {
        "kind": "datastore",
        "store": "folder",
        "path": "sub/a.csv",
        "resolved": str(served / "sub" / "a.csv"),
        "format": "csv",
        "fingerprint": from_folder.version.source["fingerprint"],
    }
    with pytest.raises(NotFound, match="No such file"):
        workspace.data.ingest("sub/none.csv", name="a", store="folder")

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(served)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{base}/sub/a.csv"), what="the HTTP server")
        workspace.datastores.add("web", base)
        over_http = workspace.data.ingest("sub/a.csv", name="web_a", store="web")
        assert over_http.version.rows == 2
        assert over_http.version.content_hash == from_folder.version.content_hash, "same content, same hash"
        by_url = workspace.data.ingest(f"{base}/sub/a.csv", name="url_a")
        assert by_url.version.source["url"] == f"{base}/sub/a.csv"
        with pytest.raises(NotFound, match="No file 'sub/nope.csv' in web"):
            workspace.data.ingest("sub/nope.csv", name="web_a", store="web")
    finally:
        server.terminate()
        server.wait(timeout=10)
