"""The SQL sandbox: queries read the workspace's data assets and nothing else (issue 10's probes)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from conveyor.errors import BadInput


@pytest.fixture
def ws(workspace, tmp_path: Path):  # type: ignore[no-untyped-def]
    workspace.data.commit_table(pa.table({"x": [1, 2, 3]}), name="nums", source={})
    (tmp_path / "outside.csv").write_text("secret\nhunter2\n")
    return workspace


_OUTSIDE = "reads only the workspace's data assets"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/os-release')",
        "SELECT * FROM read_text('/etc/shadow')",
        "SELECT * FROM read_blob('/etc/os-release')",
        "SELECT * FROM glob('/root/*')",
        "SELECT * FROM glob('/*')",
        "SELECT * FROM read_parquet('/etc/passwd')",
        "SELECT * FROM read_json('/etc/passwd')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        'SELECT * FROM "/etc/os-release"',
        "SELECT * FROM read_csv('https://example.com/data.csv')",
        "SELECT * FROM read_parquet('s3://some-bucket/data.parquet')",
        "SELECT n.x, t.* FROM nums n, read_text('/etc/os-release') t",
        "SELECT 1; SELECT * FROM read_text('/etc/os-release')",
        "SELECT * FROM query_table('/etc/passwd')",
        "SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')",
        "SELECT * FROM parquet_schema('/etc/passwd')",
        "SELECT * FROM read_csv(['/etc/passwd'])",
        "SELECT * FROM read_text('file:///etc/passwd')",
        "SELECT * FROM sqlite_scan('/tmp/conveyor.db', 'endpoints')",
        "SELECT * FROM duckdb_secrets()",
    ],
)
def test_files_outside_the_lake_cannot_be_read(ws, query: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match=_OUTSIDE):
        ws.data.query(query)


def test_a_file_next_to_the_workspace_cannot_be_read(ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for query in (
        f"SELECT * FROM read_csv('{tmp_path / 'outside.csv'}')",
        f"SELECT * FROM read_csv('{ws.settings.home}/../outside.csv')",
        f"SELECT * FROM glob('{ws.settings.home}/**')",
    ):
        with pytest.raises(BadInput, match=_OUTSIDE):
            ws.data.query(query)


def test_the_lake_itself_is_readable_only_through_the_assets(ws) -> None:  # type: ignore[no-untyped-def]
    """A part file of another asset (or one the query does not name) is out of reach by path."""
    ws.data.commit_table(pa.table({"s": ["private"]}), name="other", source={})
    other = ws.artifacts.path_of(ws.data.get("other").files[0]["digest"])
    with pytest.raises(BadInput, match=_OUTSIDE):
        ws.data.query(f"SELECT * FROM read_parquet('{other}')")
    with pytest.raises(BadInput, match=_OUTSIDE):
        ws.data.query(f"SELECT * FROM nums, read_parquet('{other}')")
    assert ws.data.query("SELECT * FROM other").records() == [{"s": "private"}]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("INSTALL httpfs", "INSTALL/LOAD"),
        ("LOAD httpfs", "INSTALL/LOAD"),
        ("ATTACH '/tmp/x.db' AS x", "ATTACH"),
        ("ATTACH ':memory:' AS m", "ATTACH"),
        ("COPY (SELECT * FROM nums) TO '/tmp/conveyor-escape.csv'", "COPY"),
        ("SET enable_external_access = true", "SET/RESET"),
        ("RESET enable_external_access", "SET/RESET"),
        ("SET allowed_directories = ['/']", "SET/RESET"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        ("CALL pragma_version()", "CALL"),
        ("EXPORT DATABASE '/tmp/conveyor-export'", "EXPORT"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("SELECT 1; ATTACH ':memory:' AS m", "ATTACH"),
    ],
)
def test_statements_other_than_select_are_refused(ws, query: str, named: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match="Only SELECT queries") as info:
        ws.data.query(query)
    assert named in str(info.value)
    assert not Path("/tmp/conveyor-escape.csv").exists()


def test_settings_cannot_be_changed_from_inside_a_select(ws) -> None:  # type: ignore[no-untyped-def]
    settings = ws.data.query(
        "SELECT name, value FROM duckdb_settings() WHERE name IN "
        "('enable_external_access', 'lock_configuration', 'autoload_known_extensions', "
        "'autoinstall_known_extensions') ORDER BY name"
    ).records()
    assert settings == [
        {"name": "autoinstall_known_extensions", "value": "false"},
        {"name": "autoload_known_extensions", "value": "false"},
        {"name": "enable_external_access", "value": "false"},
        {"name": "lock_configuration", "value": "true"},
    ]


def test_python_variables_are_not_tables(ws) -> None:  # type: ignore[no-untyped-def]
    secret_table = pa.table({"s": ["leak"]})  # noqa: F841 - a DuckDB replacement scan would find it by name
    with pytest.raises(Exception, match="secret_table") as info:
        ws.data.query("SELECT * FROM secret_table")
    assert "leak" not in str(info.value)


@pytest.mark.parametrize("query", ["select 1 as x", "SELECT 42 AS x;", "WITH a AS (SELECT 1 AS x) SELECT * FROM a"])
def test_queries_that_name_no_asset_run(ws, query: str) -> None:  # type: ignore[no-untyped-def]
    result = ws.data.query(query)
    assert len(result.records()) == 1 and result.columns == ["x"] and result.inputs == []


def test_save_as_obeys_the_sandbox(ws) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match=_OUTSIDE):
        ws.data.save_query("SELECT * FROM read_text('/etc/os-release')", name="leaked")
    with pytest.raises(BadInput, match="Only SELECT"):
        ws.data.save_query("COPY (SELECT 1) TO '/tmp/conveyor-escape.csv'", name="leaked")
    assert [a.name for a in ws.data.list()] == ["nums"]
    saved = ws.data.save_query("SELECT x * 2 AS y FROM nums", name="doubled")
    assert saved.version.rows == 3


def test_spilling_goes_to_a_private_folder_that_is_removed(ws) -> None:  # type: ignore[no-untyped-def]
    scratch = Path(ws.artifacts.root) / "tmp"
    before = set(scratch.iterdir()) if scratch.exists() else set()
    ws.data.query("SELECT sum(x) FROM nums")
    after = set(scratch.iterdir()) if scratch.exists() else set()
    assert after == before


@pytest.mark.s3
def test_the_sandbox_allows_the_lake_on_s3_and_nothing_else(
    tmp_path: Path, s3_bucket: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import s3fs

    from conveyor import Workspace

    url, options = s3_bucket
    monkeypatch.setenv("CONVEYOR_ARTIFACTS_OPTIONS", json.dumps(options))
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    fs = s3fs.S3FileSystem(endpoint_url=options["endpoint_url"], key="testing", secret="testing")
    fs.pipe_file(f"{bucket}/elsewhere/secret.csv", b"s\nhunter2\n")
    with Workspace.open(tmp_path / "ws", artifacts_url=url) as ws:
        ws.data.commit_table(pa.table({"x": [1, 2, 3]}), name="nums", source={})
        ws.data.commit_table(pa.table({"s": ["private"]}), name="other", source={})
        assert ws.data.query("SELECT sum(x) AS s FROM nums").records() == [{"s": 6}]
        assert ws.data.query("select 1 as x").records() == [{"x": 1}]
        other = ws.artifacts.path_of(ws.data.get("other").files[0]["digest"])
        for query in (
            f"SELECT * FROM read_csv('s3://{bucket}/elsewhere/secret.csv')",
            f"SELECT * FROM nums, read_csv('s3://{bucket}/elsewhere/secret.csv')",
            f"SELECT * FROM nums, glob('s3://{bucket}/*')",
            f"SELECT * FROM nums, read_parquet('{other}')",
            "SELECT * FROM nums, read_text('/etc/os-release')",
        ):
            with pytest.raises(BadInput, match=_OUTSIDE):
                ws.data.query(query)


# -- the same probes through the faces: exit 2 on the command line, 400 over REST ------------------------


def test_conveyor_sql_runs_a_query_naming_no_asset_and_refuses_files(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "cli-ws")
    assert cli("--home", home, "init").code == 0
    ran = cli("--home", home, "sql", "select 1 as x", "--json")
    assert ran.code == 0, ran.err
    assert ran.json == {"columns": ["x"], "rows": [{"x": 1}], "workspace": home}
    refused = cli("--home", home, "sql", "SELECT * FROM read_csv('/etc/passwd')")
    assert refused.code == 2 and _OUTSIDE in refused.err + refused.out
    saved = cli("--home", home, "sql", "SELECT * FROM read_text('/etc/os-release')", "--save-as", "leak")
    assert saved.code == 2
    installed = cli("--home", home, "sql", "INSTALL httpfs")
    assert installed.code == 2 and "INSTALL/LOAD" in installed.err + installed.out


def _client(ws):  # type: ignore[no-untyped-def]
    """The REST API as an admin: the sandbox holds whatever the caller's role."""
    from tests.api_client import api_client

    return api_client(ws, "admin")


@pytest.mark.parametrize(
    "body",
    [
        {"query": "SELECT * FROM read_csv('/etc/passwd')"},
        {"query": "SELECT * FROM read_text('/etc/shadow')"},
        {"query": "SELECT * FROM glob('/root/*')"},
        {"query": "SELECT * FROM read_blob('/etc/os-release')"},
        {"query": "SELECT * FROM read_text('/etc/os-release')", "save_as": "leak"},
        {"query": "INSTALL httpfs"},
        {"query": "ATTACH '/tmp/x.db' AS x"},
        {"query": "COPY (SELECT 1) TO '/tmp/conveyor-escape.csv'"},
        {"query": "SET enable_external_access = true"},
    ],
)
def test_rest_sql_probes_are_400(ws, body: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    response = _client(ws).post("/api/v1/data/sql", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "bad_input"
    assert "root:" not in response.text and "NAME=" not in response.text
    assert [a.name for a in ws.data.list()] == ["nums"]


def test_rest_sql_naming_no_asset_is_200(ws) -> None:  # type: ignore[no-untyped-def]
    response = _client(ws).post("/api/v1/data/sql", json={"query": "select 1 as x"})
    assert response.status_code == 200, response.text
    assert response.json() == {"columns": ["x"], "rows": [{"x": 1}], "truncated": False, "inputs": []}


def test_duckdbs_default_temp_folder_in_the_working_folder_is_not_readable(  # type: ignore[no-untyped-def]
    ws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With external access off, DuckDB still allows its temp folder, by default ``.tmp`` in the working folder;
    the sandbox moves it to a private, empty folder."""
    (tmp_path / "cwd" / ".tmp").mkdir(parents=True)
    (tmp_path / "cwd" / ".tmp" / "leak.csv").write_text("s\nhunter2\n")
    monkeypatch.chdir(tmp_path / "cwd")
    for query in ("SELECT * FROM read_csv('.tmp/leak.csv')", f"SELECT * FROM read_csv('{tmp_path}/cwd/.tmp/leak.csv')"):
        with pytest.raises(BadInput, match=_OUTSIDE):
            ws.data.query(query)
