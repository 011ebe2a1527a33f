"""Where settings come from: flags, environment, conveyor.toml, discovery, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import DEFAULT_PORT, resolve_settings
from conveyor.errors import InvalidConfig


def test_defaults_put_everything_inside_the_workspace(tmp_path: Path) -> None:
    s = resolve_settings(tmp_path / "ws", env={})
    assert s.home == tmp_path / "ws"
    assert s.db_url == f"sqlite:///{tmp_path / 'ws' / 'conveyor.db'}"
    assert s.artifacts_url == str(tmp_path / "ws" / "artifacts")
    assert s.server_host == "127.0.0.1"
    assert s.server_port == DEFAULT_PORT
    assert s.origin == {
        "home": "flag",
        "db_url": "default",
        "artifacts_url": "default",
        "max_workers": "default",
        "max_processes": "default",
    }


def test_flag_beats_environment_beats_file(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    home.mkdir()
    (home / "conveyor.toml").write_text('[workspace]\ndb_url = "sqlite:///from-file.db"\n[artifacts]\nurl = "lake"\n')
    env = {"CONVEYOR_DB_URL": "sqlite:////env.db"}
    from_file = resolve_settings(home, env={})
    assert from_file.db_url == f"sqlite:///{home / 'from-file.db'}"  # relative to the workspace
    assert from_file.artifacts_url == str(home / "lake")
    assert from_file.origin["db_url"] == "conveyor.toml"
    assert resolve_settings(home, env=env).db_url == "sqlite:////env.db"
    assert resolve_settings(home, env=env, db_url="sqlite:////flag.db").db_url == "sqlite:////flag.db"


def test_home_from_environment_then_discovery_then_user_default(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".conveyor").mkdir(parents=True)
    (project / ".conveyor" / "conveyor.toml").write_text("")
    nested = project / "src" / "deep"
    nested.mkdir(parents=True)

    assert resolve_settings(env={"CONVEYOR_HOME": str(tmp_path / "e")}, cwd=nested).home == tmp_path / "e"
    discovered = resolve_settings(env={}, cwd=nested)
    assert discovered.home == project / ".conveyor"
    assert discovered.origin["home"] == "discovered"
    fallback = resolve_settings(env={}, cwd=tmp_path)
    assert fallback.home == Path.home() / ".conveyor"
    assert fallback.origin["home"] == "default"


def test_a_workspace_opened_through_conveyor_home_is_discovered_later(tmp_path: Path) -> None:
    """`make quickstart` opens ./.conveyor through CONVEYOR_HOME (no conveyor.toml is written); a later
    `conveyor runs list` in that folder, without the variable, must find the same workspace."""
    from conveyor import Workspace

    project = tmp_path / "project"
    Workspace.open(project / ".conveyor").close()
    assert not (project / ".conveyor" / "conveyor.toml").exists()
    found = resolve_settings(env={}, cwd=project)
    assert (found.home, found.origin["home"]) == (project / ".conveyor", "discovered")


def test_secrets_are_read_from_the_environment(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    home.mkdir()
    (home / "conveyor.toml").write_text('[workspace]\ndb_url = "postgresql+psycopg://app:${PGPASS}@db/conveyor"\n')
    s = resolve_settings(home, env={"PGPASS": "hunter2"})
    assert s.db_url == "postgresql+psycopg://app:hunter2@db/conveyor"
    with pytest.raises(InvalidConfig, match=r"\$\{PGPASS\}.*PGPASS is not set"):
        resolve_settings(home, env={})


def test_artifact_options_from_file_and_environment(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    home.mkdir()
    (home / "conveyor.toml").write_text('[artifacts]\nurl = "s3://b/p"\noptions = { endpoint_url = "http://a" }\n')
    assert resolve_settings(home, env={}).artifacts_options == {"endpoint_url": "http://a"}
    env = {"CONVEYOR_ARTIFACTS_OPTIONS": '{"endpoint_url": "http://b", "anon": false}'}
    assert resolve_settings(home, env=env).artifacts_options == {"endpoint_url": "http://b", "anon": False}
    with pytest.raises(InvalidConfig, match="CONVEYOR_ARTIFACTS_OPTIONS is not valid JSON"):
        resolve_settings(home, env={"CONVEYOR_ARTIFACTS_OPTIONS": "{endpoint"})


def test_a_file_is_not_a_workspace(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("hi")
    with pytest.raises(InvalidConfig, match="is a file, not a folder") as info:
        resolve_settings(file, env={})
    assert info.value.exit_code == 2
    with pytest.raises(InvalidConfig, match="because .*notes.txt' is a file"):
        resolve_settings(file / "ws", env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[workspace\n", "is not valid TOML"),
        ("[workspaces]\n", r"unknown section \[workspaces\].*Did you mean 'workspace'"),
        ("[server]\nport = 99999\n", "must be a whole number from 0 to 65535"),
        ("[server]\nport = 'x'\n", "must be a whole number"),
        ("workspace = 3\n", r"\[workspace\] must be a table"),
    ],
)
def test_bad_conveyor_toml_is_explained(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "conveyor.toml").write_text(text)
    with pytest.raises(InvalidConfig, match=message):
        resolve_settings(tmp_path, env={})
