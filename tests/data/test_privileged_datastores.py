"""privileged_datastore_reason: which datastore URLs only an admin may register."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.data import privileged_datastore_reason

PUBLIC_V4 = "93.184.215.14"  # a public address: no DNS needed to classify it


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/", "is a local path on the server's machine"),
        ("/etc", "is a local path on the server's machine"),
        ("relative/folder", "is a local path on the server's machine"),
        ("~/data", "is a local path on the server's machine"),
        ("file:///etc", "is a local path on the server's machine"),
        ("FILE:///etc", "is a local path on the server's machine"),
        ("local:///etc", "is a local path"),
        ("sqlite:////tmp/other.db", "is a Sqlite database file on the server's machine"),
        ("duckdb:////tmp/other.duckdb", "is a Duckdb database file"),
        ("memory://x", "protocol 'memory', which is not a network store"),
        ("zip://a.csv::file:///tmp/a.zip", "chains fsspec protocols"),
        ("simplecache::s3://bucket/x", "chains fsspec protocols"),
        ("reference://x", "not a network store"),
        ("http://127.0.0.1:8000/", "reaches 127.0.0.1, a loopback address"),
        ("http://localhost/", "reaches localhost (127.0.0.1), a loopback address"),
        ("https://user@127.0.0.1/", "loopback"),
        ("http://0x7f.1/", "loopback"),
        ("http://2130706433/", "loopback"),
        ("http://[::1]:9000/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "reaches 169.254.169.254, a link-local address"),
        ("http://[fe80::1]/", "link-local"),
        ("http://10.0.0.5/", "private"),
        ("http://172.16.3.4/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://[fd00::1]/", "private"),
        ("http://0.0.0.0:8080/", "unspecified"),
        ("http://100.64.0.1/", "reserved (not public)"),
        ("http://no-such-host.invalid/", "does not resolve"),
        ("postgresql://app@127.0.0.1:5432/db", "loopback"),
        ("postgresql://app@localhost/db", "loopback"),
        ("postgresql+psycopg://app@10.1.2.3/db", "private"),
        ("mysql://root@192.168.0.10:3306/test", "private"),
        ("postgresql:///db", "names no host, so it connects through a local socket"),
        (f"postgresql://app@{PUBLIC_V4}/db?host=/var/run/postgresql", "local socket /var/run/postgresql"),
        (f"mysql://root@{PUBLIC_V4}/db?unix_socket=/run/mysqld.sock", "local socket"),
    ],
)
def test_privileged_urls_say_why(workspace, url: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    reason = privileged_datastore_reason(url, workspace)
    assert reason is not None and expected in reason, reason


@pytest.mark.parametrize(
    "url",
    [
        f"http://{PUBLIC_V4}/data/",
        f"https://{PUBLIC_V4}:8443/",
        "s3://some-bucket/prefix",
        "gs://some-bucket/prefix",
        f"postgresql://app@{PUBLIC_V4}:5432/db",
        f"mysql://root@{PUBLIC_V4}/test",
    ],
)
def test_public_network_stores_need_no_admin(workspace, url: str) -> None:  # type: ignore[no-untyped-def]
    assert privileged_datastore_reason(url, workspace) is None


def test_s3_endpoint_in_options_is_checked(workspace) -> None:  # type: ignore[no-untyped-def]
    assert "loopback" in str(
        privileged_datastore_reason("s3://bucket/x", workspace, options={"endpoint_url": "http://127.0.0.1:9000"})
    )
    nested = {"client_kwargs": {"endpoint_url": "http://169.254.169.254"}}
    assert "link-local" in str(privileged_datastore_reason("s3://bucket/x", workspace, options=nested))
    public = {"endpoint_url": f"https://{PUBLIC_V4}"}
    assert privileged_datastore_reason("s3://bucket/x", workspace, options=public) is None
    assert "private" in str(
        privileged_datastore_reason(f"sftp://{PUBLIC_V4}/x", workspace, options={"host": "10.0.0.1"})
    )


def test_the_workspace_home_and_metadata_database(workspace) -> None:  # type: ignore[no-untyped-def]
    home = workspace.settings.home
    for url in (str(home), str(home / "artifacts"), f"file://{home}", str(home / "sub" / ".." / "x")):
        reason = privileged_datastore_reason(url, workspace)
        assert reason is not None and "inside the workspace's home" in reason, (url, reason)
    own = privileged_datastore_reason(workspace.settings.db_url, workspace)
    assert own is not None and "the workspace's own metadata database" in own
    assert workspace.settings.db_url.startswith("sqlite")


def test_a_symlink_into_the_home_counts_as_the_home(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "innocent").symlink_to(workspace.settings.home)
    assert "inside the workspace's home" in str(privileged_datastore_reason(str(tmp_path / "innocent"), workspace))


def test_the_metadata_database_on_postgresql(tmp_path: Path) -> None:
    """Same host, port and database as the workspace's PostgreSQL metadata database (matched without
    connecting: the URL is only compared)."""
    from dataclasses import replace

    from conveyor.data._trust import _same_database

    ours = f"postgresql+psycopg://conveyor@{PUBLIC_V4}:5432/conveyor"
    assert _same_database(f"postgresql://someone@{PUBLIC_V4}/conveyor", ours)
    assert not _same_database(f"postgresql://someone@{PUBLIC_V4}/other", ours)
    assert not _same_database(f"postgresql://someone@{PUBLIC_V4}:5433/conveyor", ours)

    class _Ws:  # only settings are read
        def __init__(self, settings):  # type: ignore[no-untyped-def]
            self.settings = settings

    from conveyor.config import resolve_settings

    settings = replace(resolve_settings(tmp_path / "ws"), db_url=ours)
    reason = privileged_datastore_reason(f"postgresql://app@{PUBLIC_V4}/conveyor", _Ws(settings))  # type: ignore[arg-type]
    assert reason is not None and "the workspace's own metadata database" in reason


def test_the_workspace_artifact_store_in_a_bucket(tmp_path: Path) -> None:
    from dataclasses import replace

    from conveyor.config import resolve_settings

    class _Ws:
        def __init__(self, settings):  # type: ignore[no-untyped-def]
            self.settings = settings

    ws = _Ws(replace(resolve_settings(tmp_path / "ws"), artifacts_url="s3://lake-bucket/workspace"))
    for url in ("s3://lake-bucket/workspace", "s3://lake-bucket/workspace/blobs", "s3://lake-bucket"):
        reason = privileged_datastore_reason(url, ws)  # type: ignore[arg-type]
        assert reason is not None and "the workspace's own artifact store" in reason, url
    assert privileged_datastore_reason("s3://lake-bucket/other-team", ws) is None  # type: ignore[arg-type]
