"""Paths inside a datastore stay inside its root; local datastores are stored with absolute paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import BadInput


@pytest.fixture
def folder(workspace, tmp_path: Path):  # type: ignore[no-untyped-def]
    root = tmp_path / "drop"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.csv").write_text("x\n1\n2\n")
    (tmp_path / "secret.csv").write_text("password\nhunter2\n")
    workspace.datastores.add("drop", str(root))
    return root


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("../secret.csv", "leads outside datastore 'drop', whose root is"),
        ("../../../etc/group", "leads outside datastore 'drop'"),
        ("sub/../../secret.csv", "leads outside"),
        ("sub/../sub/a.csv", "leads outside"),  # '..' is refused even when it would land inside
        ("..\\secret.csv", "leads outside"),
        ("%2e%2e/secret.csv", "leads outside"),
        ("%252e%252e/secret.csv", "leads outside"),
        ("/etc/group", "is absolute"),
        ("//etc/group", "is absolute"),
        ("%2Fetc%2Fgroup", "is absolute"),
        ("file:///etc/group", "is absolute"),
        ("s3://bucket/key.csv", "is absolute"),
        ("C:\\Windows\\win.ini", "is absolute"),
        ("", "Give the path of a file inside datastore 'drop'"),
        ("sub/a\x00.csv", "Give the path of a file"),
    ],
)
def test_paths_escaping_the_root_are_refused(workspace, folder: Path, path: str, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match=message) as info:
        workspace.data.ingest(path, name="leak", store="drop")
    if "leads outside" in message or "is absolute" in message:
        assert repr(path) in str(info.value) and str(folder) in str(info.value), "names the path and the root"
    assert workspace.data.list() == []


def test_a_symlink_out_of_the_root_is_refused(workspace, folder: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (folder / "escape.csv").symlink_to(tmp_path / "secret.csv")
    (folder / "outdir").symlink_to(tmp_path)
    (folder / "inside.csv").symlink_to(folder / "sub" / "a.csv")
    for path in ("escape.csv", "outdir/secret.csv"):
        with pytest.raises(BadInput, match=rf"Path '{path}' leads outside datastore 'drop'.*symbolic link"):
            workspace.data.ingest(path, name="leak", store="drop")
    inside = workspace.data.ingest("inside.csv", name="ok", store="drop")
    assert inside.version.rows == 2
    assert inside.version.source["resolved"] == str((folder / "sub" / "a.csv").resolve())


def test_paths_inside_the_root_work(workspace, folder: Path) -> None:  # type: ignore[no-untyped-def]
    assert workspace.data.ingest("sub/a.csv", name="a", store="drop").version.rows == 2
    assert workspace.data.ingest("./sub/a.csv", name="b", store="drop").version.rows == 2
    assert workspace.data.ingest("sub//a.csv", name="c", store="drop").version.rows == 2


def test_relative_local_urls_are_stored_absolute(workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "here" / "data").mkdir(parents=True)
    (tmp_path / "here" / "data" / "a.csv").write_text("x\n1\n")
    monkeypatch.chdir(tmp_path / "here")
    made = workspace.datastores.add("rel", "data")
    assert made.url == str(tmp_path / "here" / "data")
    dotted = workspace.datastores.add("dotted", "./data/../data", check=False)
    assert dotted.url == str(tmp_path / "here" / "data")
    as_file_url = workspace.datastores.add("fileurl", "file://data", check=False)
    assert as_file_url.url == "file://" + str(tmp_path / "here" / "data")
    based = workspace.datastores.add("based", "data", relative_to=tmp_path / "here", check=False)
    assert based.url == str(tmp_path / "here" / "data")
    monkeypatch.chdir(tmp_path)  # another working folder changes nothing
    assert workspace.data.ingest("a.csv", name="a", store="rel").version.rows == 1
    assert workspace.data.ingest("a.csv", name="a2", store="fileurl").version.rows == 1


def test_a_missing_or_file_root_is_bad_input_not_unavailable(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match="which is missing. A local datastore is a folder"):
        workspace.datastores.add("gone", "no/such/folder")
    (tmp_path / "f.csv").write_text("x\n1\n")
    with pytest.raises(BadInput, match="which is a file, not a folder"):
        workspace.datastores.add("file", str(tmp_path / "f.csv"))


def test_a_stored_relative_path_is_refused_at_use(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Datastores saved before paths were made absolute are not resolved against the working folder."""
    import sqlalchemy as sa

    from conveyor.store._schema import DatastoreRow

    workspace.datastores.add("old", str(tmp_path))
    with workspace.store.write() as session:
        session.execute(sa.update(DatastoreRow).where(DatastoreRow.name == "old").values(url="relative/folder"))
    with pytest.raises(BadInput, match="relative path 'relative/folder'.*add it again"):
        workspace.data.ingest("a.csv", name="a", store="old")


def test_the_rest_probes_are_4xx(workspace, folder: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.api_client import api_client

    client = api_client(workspace, "admin")  # the paths are refused whatever the role
    escaped = client.post("/api/v1/data/leak/ingest", json={"store": "drop", "path": "../../../etc/group"})
    assert escaped.status_code == 400 and "leads outside" in escaped.json()["error"]["message"]
    absolute = client.post("/api/v1/data/leak/ingest", json={"store": "drop", "path": "/etc/os-release"})
    assert absolute.status_code == 400 and "is absolute" in absolute.json()["error"]["message"]
    missing = client.post("/api/v1/datastores", json={"name": "nowhere", "url": "0"})
    assert missing.status_code == 400, missing.text
    assert client.get("/api/v1/data").json() == []


@pytest.mark.s3
def test_object_store_paths_stay_under_the_prefix(workspace, s3_bucket: tuple[str, dict[str, str]]) -> None:  # type: ignore[no-untyped-def]
    import s3fs

    url, options = s3_bucket
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    fs = s3fs.S3FileSystem(endpoint_url=options["endpoint_url"], key="testing", secret="testing")
    fs.pipe_file(f"{bucket}/shared/in.csv", b"x\n1\n2\n")
    fs.pipe_file(f"{bucket}/private/secret.csv", b"s\nhunter2\n")
    workspace.datastores.add("bucket", f"s3://{bucket}/shared", options=dict(options))
    assert workspace.data.ingest("in.csv", name="ok", store="bucket").version.rows == 2
    for path in ("../private/secret.csv", "%2e%2e/private/secret.csv", f"/{bucket}/private/secret.csv"):
        with pytest.raises(BadInput, match=rf"Path '{path}' (leads outside|is absolute).*{bucket}/shared"):
            workspace.data.ingest(path, name="leak", store="bucket")
    assert [a.name for a in workspace.data.list()] == ["ok"]
