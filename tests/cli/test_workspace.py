"""The command line never guesses a workspace: only ``init`` and ``quickstart`` make one; any other command on a
missing workspace exits 2 naming where it looked and the ``conveyor init`` that would make it. ``--verbose`` and
``--json`` say which workspace answered; a workspace made by a newer Conveyor, or one this user cannot write, is
refused with a message that says why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor import Workspace, __version__
from conveyor.errors import InvalidConfig, NotFound
from conveyor.store._schema import SCHEMA_REVISION


@pytest.mark.parametrize(
    "command",
    [
        ["runs", "list"],
        ["models", "list", "--json"],
        ["data", "list"],
        ["endpoints", "list"],
        ["users", "list"],
        ["lineage", "show", "run:x"],
        ["sql", "SELECT 1"],
    ],
)
def test_a_missing_workspace_is_named_and_not_made(cli, tmp_path: Path, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    typo = tmp_path / "tpyo"
    result = cli("--home", str(typo), *command)
    assert result.code == 2
    assert f"looked in '{typo}' (named by --home)" in result.err
    assert f"conveyor init --home {typo}" in result.err
    assert "Traceback" not in result.err
    assert not typo.exists()  # nothing made on the way
    if "--json" in command:
        error = result.json["error"]
        assert error["code"] == "not_found"
        assert error["details"]["home"] == str(typo)
        assert error["details"]["create"] == f"conveyor init --home {typo}"


def test_without_any_workspace_the_places_looked_at_are_named(
    cli,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = tmp_path / "project" / "src"
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    result = cli("runs", "list")
    assert result.code == 2
    assert f"looked in '{project}' and the folders above it for a .conveyor/ folder" in result.err
    user_default = Path.home() / ".conveyor"  # HOME is the test's own (conftest)
    assert f"then '{user_default}'" in result.err
    assert f"conveyor init --home {user_default}" in result.err
    assert "conveyor init --home .conveyor" in result.err
    assert not user_default.exists() and not (project / ".conveyor").exists()


def test_the_environment_variable_is_named(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "nowhere"))
    result = cli("models", "list")
    assert result.code == 2
    assert "(named by CONVEYOR_HOME)" in result.err


def test_init_then_every_command_finds_it(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    project = tmp_path / "project"
    (project / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(project)
    assert cli("init", ".conveyor").code == 0
    monkeypatch.chdir(project / "deep" / "er")
    listed = cli("--verbose", "runs", "list", "--json")
    assert listed.code == 0
    assert listed.json == {"runs": [], "next_page_token": None, "workspace": str(project / ".conveyor")}
    assert f"workspace: {project / '.conveyor'} (from the nearest .conveyor/ above this folder)" in listed.err


def test_verbose_names_the_workspace_and_its_stores(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "ws"
    assert cli("--home", str(home), "init").code == 0
    quiet = cli("--home", str(home), "models", "list")
    assert quiet.code == 0 and "workspace:" not in quiet.err
    loud = cli("--home", str(home), "--verbose", "models", "list")
    assert loud.code == 0
    assert loud.err.strip() == (
        f"workspace: {home} (from --home); metadata: sqlite:///{home / 'conveyor.db'}; artifacts: {home / 'artifacts'}"
    )
    assert "No models yet" in loud.out  # stdout stays the answer


def test_json_lists_keep_their_shape_and_objects_name_the_workspace(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    assert cli("--home", home, "init", "--json").json["workspace"] == home
    assert cli("--home", home, "data", "list", "--json").json == {"assets": [], "workspace": home}


def test_the_sdk_still_makes_a_workspace_on_first_use_unless_told_not_to(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="conveyor init --home"):
        Workspace.open(tmp_path / "a", create=False)
    assert not (tmp_path / "a").exists()
    with Workspace.open(tmp_path / "a") as ws:
        assert ws.store.dialect == "sqlite"
    with Workspace.open(tmp_path / "a", create=False) as ws:  # now it exists
        assert ws.settings.home == tmp_path / "a"


def test_an_empty_postgres_database_is_not_a_workspace(cli, tmp_path: Path, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    result = cli("--home", home, "--db-url", postgres_url, "runs", "list")
    assert result.code == 2
    assert "(named by --db-url); it has no Conveyor tables" in result.err
    assert f"conveyor init --home {home}" in result.err
    engine = sa.create_engine(postgres_url)
    try:
        assert not sa.inspect(engine).has_table("alembic_version")  # refused, not migrated
    finally:
        engine.dispose()
    assert cli("--home", home, "--db-url", postgres_url, "init").code == 0
    assert cli("--home", home, "runs", "list", "--json").json["runs"] == []  # init wrote the URL down


def test_a_workspace_from_a_newer_conveyor_is_refused_with_both_versions(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "ws"
    assert cli("--home", str(home), "init").code == 0
    engine = sa.create_engine(f"sqlite:///{home / 'conveyor.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9001'"))
    engine.dispose()
    result = cli("--home", str(home), "runs", "list", "--json")
    assert result.code == 2
    message = result.json["error"]["message"]
    assert f"schema revision 9001, newer than this Conveyor's {SCHEMA_REVISION}" in message
    assert f"Conveyor {__version__} knows revisions up to {SCHEMA_REVISION}" in message
    assert "pip install -U conveyor-ml" in message
    details = result.json["error"]["details"]
    assert details["revision"] == "9001" and details["supported"] == SCHEMA_REVISION
    with engine.connect() as conn:  # left as it was
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "9001"
    with pytest.raises(InvalidConfig, match="newer than this Conveyor's"):
        Workspace.open(home)  # the SDK refuses too, even when it may create


_AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A folder another user can reach (pytest's own temporary folders are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="conveyor-ro-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the command as a user who cannot write the workspace",
)
def test_a_read_only_workspace_is_a_clear_error(shared_folder: Path) -> None:
    home = shared_folder / "ws"
    Workspace.open(home).close()
    for path in (home, *home.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by all, writable by root only
    done = subprocess.run(
        [*_AS_NOBODY, sys.executable, "-m", "conveyor", "--home", str(home), "runs", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(shared_folder)},
    )
    assert done.returncode == 2, done.stderr
    assert "is read-only for this user" in done.stderr
    assert "chmod u+w" in done.stderr
    assert "Traceback" not in done.stderr
