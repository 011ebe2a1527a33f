"""Scratch space is reclaimed: what a SIGKILLed writer left in scratch is removed when a workspace opens next;
nothing that is not a dead Conveyor process's is ever touched."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from conveyor import Workspace
from conveyor._owner import owner_of_name, this_process
from conveyor.errors import NotFound
from tests.conftest import wait_until
from tests.faults._chaos import long_only, make_csv, sigkill, start_cli, start_script, tree_bytes

pytestmark = pytest.mark.chaos


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("csv")


def test_scratch_folders_and_partial_writes_are_named_after_their_owner(workspace) -> None:  # type: ignore[no-untyped-def]
    scratch = workspace.artifacts.scratch_dir()
    named = owner_of_name(scratch.name)
    assert named is not None and named[0] == "scratch"
    assert (named[1].pid, named[1].key) == (os.getpid(), this_process().key)
    assert scratch.parent == Path(workspace.artifacts.root) / "tmp"


def test_only_the_scratch_of_dead_conveyor_processes_of_this_machine_is_removed(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    writer = start_script(
        """
        ws = Workspace.open(sys.argv[1])
        scratch = ws.artifacts.scratch_dir()
        (scratch / "part-00000.parquet").write_bytes(b"x" * 1_000_000)
        print(scratch, flush=True)
        time.sleep(300)
        """,
        str(home),
    )
    assert writer.stdout is not None
    dead = Path(writer.stdout.readline().strip())
    dead_tag = dead.name.split("-", 1)[1].rsplit("-", 1)[0]
    sigkill(writer)
    tmp = home / "artifacts" / "tmp"
    assert dead.parent == tmp and tree_bytes(dead) == 1_000_000
    dead_put = tmp / f"put-{dead_tag}-abc123"
    dead_put.write_bytes(b"y" * 1000)
    kept = {
        "mine": Workspace.open(home).artifacts.scratch_dir(),  # a live owner: this process
        "not ours": tmp / "my-notes",
        "old style, no owner": tmp / "scratch-ab12cd34",
        "another machine": tmp / f"scratch-0123456789-{os.getpid() + 1}-12345-x1",
        "unknown kind": tmp / f"cache-{dead_tag}-x1",
    }
    for folder in kept.values():
        folder.mkdir(exist_ok=True)
        (folder / "data").write_bytes(b"z" * 100)

    swept = Workspace.open(home).artifacts.sweep_scratch()  # opening swept already: nothing left to do
    assert (swept.entries, swept.bytes) == (0, 0)
    assert not dead.exists() and not dead_put.exists()
    for why, folder in kept.items():
        assert (folder / "data").exists(), f"{why}: {folder.name} must be left alone"


@pytest.mark.s3
def test_on_an_object_store_scratch_is_a_private_folder_of_the_users_and_is_swept_too(
    tmp_path: Path, s3_bucket: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    url, options = s3_bucket
    env = {"CONVEYOR_ARTIFACTS_URL": url, "CONVEYOR_ARTIFACTS_OPTIONS": json.dumps(options)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    writer = start_script(
        """
        ws = Workspace.open(sys.argv[1])
        scratch = ws.artifacts.scratch_dir()
        (scratch / "part.parquet").write_bytes(b"x" * 1000)
        print(scratch, flush=True)
        time.sleep(300)
        """,
        str(tmp_path / "ws"),
        env=env,
    )
    assert writer.stdout is not None
    dead = Path(writer.stdout.readline().strip())
    sigkill(writer)
    assert dead.parent.name == f"conveyor-scratch-{os.getuid()}" and (dead.parent.stat().st_mode & 0o777) == 0o700
    assert (dead / "part.parquet").exists()
    with Workspace.open(tmp_path / "ws") as ws:
        assert not ws.artifacts.is_local
        assert not dead.exists()


def test_a_killed_ingest_leaves_no_scratch_and_no_half_written_version(tmp_path: Path, data: Path) -> None:
    home = tmp_path / "ws"
    csv = make_csv(data / "40mb.csv", 40)
    Workspace.open(home).close()
    tmp = home / "artifacts" / "tmp"
    ingest = start_cli("--home", str(home), "data", "ingest", str(csv), "--name", "big", "--json", log=tmp_path / "log")
    wait_until(lambda: tree_bytes(tmp) > 2_000_000, timeout=120, interval=0.01, what="the ingest to write scratch")
    sigkill(ingest)
    left = tree_bytes(tmp)
    assert left > 0, "the kill landed mid-write"
    with Workspace.open(home) as ws:
        assert tree_bytes(tmp) == 0, "opening the workspace reclaimed the dead ingest's scratch"
        with pytest.raises(NotFound):
            ws.data.get("big")
        version = ws.data.ingest(csv, name="big").version
        assert version.version == 1 and version.rows == _csv_rows(csv)
    assert tree_bytes(tmp) == 0


@long_only
def test_ingests_killed_at_random_moments_leave_nothing_behind(tmp_path: Path, data: Path) -> None:
    """Kills at any moment (reading, writing Parquet, hashing, committing, after the end): after each, the next
    open leaves 0 bytes in scratch and every version of the asset is whole."""
    kills = 8
    home = tmp_path / "ws"
    csv = make_csv(data / "120mb.csv", 120)
    rows = _csv_rows(csv)
    rng = random.Random(3)
    Workspace.open(home).close()
    tmp = home / "artifacts" / "tmp"
    for i in range(kills):
        # a new name each time, so no kill can be a no-op re-ingestion of unchanged content
        ingest = start_cli("--home", str(home), "data", "ingest", str(csv), "--name", f"big{i}", log=tmp_path / "log")
        time.sleep(rng.uniform(1.0, 9.0))
        if ingest.poll() is None:
            sigkill(ingest)
        with Workspace.open(home) as ws:
            assert tree_bytes(tmp) == 0
            versions = [v for a in ws.data.list() for v in ws.data.versions(a.name)]
            assert all(v.rows == rows for v in versions), "a version is whole or absent"
    print(f"{kills} ingests killed; versions made anyway: {len(versions)}")


def _csv_rows(csv: Path) -> int:
    with csv.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1
