"""The content-addressed artifact store, on a local folder and on a real S3-compatible server."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.errors import ArtifactCorrupted, ArtifactMissing, InvalidConfig, InvalidReference, StoreUnavailable
from conveyor.store import ArtifactStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "artifacts")).open()
    url, options = request.getfixturevalue("s3_bucket")
    return ArtifactStore(url, options).open()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_and_get_round_trip(store: ArtifactStore) -> None:
    blob = store.put_bytes(b"hello conveyor")
    assert blob.digest == digest_of(b"hello conveyor")
    assert blob.size == 14
    assert store.exists(blob.digest)
    assert store.get_bytes(blob.digest) == b"hello conveyor"


def test_same_content_is_stored_once(store: ArtifactStore, tmp_path: Path) -> None:
    a = store.put_bytes(b"x" * 1000)
    source = tmp_path / "same.bin"
    source.write_bytes(b"x" * 1000)
    b = store.put_file(source)
    assert a == b
    listing = store.fs.find(f"{store.root}/blobs")
    assert len(listing) == 1


def test_large_streams_are_hashed_while_written(store: ArtifactStore, tmp_path: Path) -> None:
    chunks = [os.urandom(1 << 20) for _ in range(5)]
    blob = store.put_stream(iter(chunks))
    assert blob.digest == digest_of(b"".join(chunks))
    out = store.get_file(blob.digest, tmp_path / "copy.bin")
    assert out.read_bytes() == b"".join(chunks)


def test_a_failed_stream_stores_nothing_and_leaves_no_temporary_file(store: ArtifactStore) -> None:
    def broken() -> Iterator[bytes]:
        yield b"first part"
        raise OSError("source disconnected")

    with pytest.raises(OSError, match="source disconnected"):
        store.put_stream(broken())
    assert store.fs.find(f"{store.root}/blobs") == []
    if store.is_local:
        assert list((Path(store.root) / "tmp").iterdir()) == []


def test_missing_blob_is_a_clear_error(store: ArtifactStore, tmp_path: Path) -> None:
    digest = digest_of(b"never stored")
    with pytest.raises(ArtifactMissing, match=digest):
        store.get_bytes(digest)
    with pytest.raises(ArtifactMissing):
        store.get_file(digest, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_corrupted_blob_is_refused_never_returned(store: ArtifactStore, tmp_path: Path) -> None:
    blob = store.put_bytes(b"the real model bytes")
    path = store._path(blob.digest)
    if store.is_local:
        os.chmod(path, 0o644)
    store.fs.pipe_file(path, b"the evil model bytes")  # same size, different content

    with pytest.raises(ArtifactCorrupted) as info:
        store.get_bytes(blob.digest)
    assert blob.digest in str(info.value)
    assert "corrupted" in str(info.value)
    with pytest.raises(ArtifactCorrupted):
        store.get_file(blob.digest, tmp_path / "copy.bin")
    assert not (tmp_path / "copy.bin").exists(), "no partial or wrong file is left behind"
    with pytest.raises(ArtifactCorrupted), store.local_file(blob.digest):
        pass


def test_malformed_digest_is_rejected(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path)).open()
    with pytest.raises(InvalidReference, match="not an artifact digest"):
        store.get_bytes("sha256:../../etc/passwd")


def test_unknown_protocol_is_a_config_error() -> None:
    with pytest.raises(InvalidConfig, match="nosuchfs://"):
        ArtifactStore("nosuchfs://bucket/x").open()


def test_unreachable_s3_endpoint_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = ArtifactStore(
        "s3://bucket/x", {"endpoint_url": "http://127.0.0.1:1", "config_kwargs": {"retries": {"max_attempts": 1}}}
    )
    with pytest.raises(StoreUnavailable, match="Cannot reach the artifact store at s3://bucket/x"):
        store.open()


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=4096))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    store = ArtifactStore(str(tmp_path_factory.mktemp("prop"))).open()
    blob = store.put_bytes(data)
    assert blob.digest == digest_of(data)
    assert store.get_bytes(blob.digest) == data
    assert store.put_bytes(data) == blob


def test_verification_is_remembered_but_a_changed_file_is_checked_again(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path)).open()
    blob = store.put_bytes(b"abc" * 1000)
    path = store.verified_path(blob.digest)
    assert (tmp_path / "verified" / blob.hex).read_text().count(" ") == 2
    assert store.verified_path(blob.digest) == path
    os.chmod(path, 0o644)
    path.write_bytes(b"abd" * 1000)
    with pytest.raises(ArtifactCorrupted):
        store.verified_path(blob.digest)


@pytest.mark.parametrize("folder", ["artifacts", "artifacts/", "a//b/", ""])
def test_a_local_folder_is_opened_without_fsspec_at_the_root_fsspec_gives(tmp_path: Path, folder: str) -> None:
    """The default store (an absolute local path) opens without loading fsspec; its root is fsspec's own, so blobs
    are found where fsspec (used once a blob is read or written) puts them."""
    from fsspec.core import url_to_fs

    url = f"{tmp_path}/{folder}"
    store = ArtifactStore(url).open()
    assert store._fs is None  # opened without making the fsspec filesystem
    assert store.is_local
    _, root = url_to_fs(url)
    assert store.root == str(root).rstrip("/")
    blob = store.put_bytes(b"placed where fsspec reads it")
    assert store.fs.cat_file(store.path_of(blob.digest)) == b"placed where fsspec reads it"
