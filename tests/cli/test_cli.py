"""The command line: summaries for people, one JSON object with --json, and exit codes 0 / 1 / 2."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path) -> str:
    """Where a test's workspace goes (not made yet: only ``init`` and ``quickstart`` make one)."""
    return str(tmp_path / "ws")


@pytest.fixture
def made(cli, home: str) -> str:  # type: ignore[no-untyped-def]
    """A workspace made with ``conveyor init``; its folder."""
    assert cli("--home", home, "init").code == 0
    return home


def test_help_lists_the_command_groups(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--help")
    assert result.code == 0
    for group in ("init", "quickstart", "server", "data", "runs", "models", "endpoints"):
        assert group in result.out


def test_version(cli) -> None:  # type: ignore[no-untyped-def]
    from conveyor import __version__

    assert cli("--version").out.strip() == f"conveyor {__version__}"


def test_init_is_idempotent(cli, home: str) -> None:  # type: ignore[no-untyped-def]
    first = cli("--home", home, "init", "--json")
    assert first.code == 0
    assert first.json["created"] is True
    assert first.json["db_backend"] == "sqlite"
    assert Path(home, "conveyor.toml").is_file()
    toml_before = Path(home, "conveyor.toml").read_text()
    again = cli("--home", home, "init", "--json")
    assert again.json["created"] is False
    assert Path(home, "conveyor.toml").read_text() == toml_before
    human = cli("init", home)
    assert "Already a workspace" in human.out


def test_init_writes_urls_but_never_a_password(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    refused = cli("--db-url", "postgresql+psycopg://u:pw@127.0.0.1/db", "init", str(tmp_path / "a"))
    assert refused.code == 2
    assert "Refusing to write a password" in refused.err
    assert not (tmp_path / "a" / "conveyor.toml").exists()
    lake = str(tmp_path / "lake")
    ok = cli("--artifacts-url", lake, "init", str(tmp_path / "b"), "--json")
    assert ok.code == 0 and ok.json["artifacts_url"] == lake
    assert cli("--home", str(tmp_path / "b"), "init", "--json").json["artifacts_url"] == lake


def test_data_commands(cli, made: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "sales.csv"
    source.write_text("region,amount\nnorth,10\nsouth,20\n")
    ingested = cli("--home", made, "data", "ingest", str(source), "--name", "sales", "--json")
    assert ingested.code == 0
    assert {k: ingested.json[k] for k in ("name", "version", "created", "rows")} == {
        "name": "sales",
        "version": 1,
        "created": True,
        "rows": 2,
    }
    assert ingested.json["hash"].startswith("sha256:")
    again = cli("--home", made, "data", "ingest", str(source), "--name", "sales")
    assert "already holds this content" in again.out
    assert cli("--home", made, "data", "list", "--json").json["assets"][0]["name"] == "sales"
    shown = cli("--home", made, "data", "show", "sales:1", "--json").json
    assert shown["ref"] == "sales:1" and shown["rows"] == 2
    head = cli("--home", made, "data", "head", "sales", "-n", "1", "--json").json
    assert head["rows"] == [{"region": "north", "amount": 10}]
    assert "north" in cli("--home", made, "data", "head", "sales").out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["quickstart", "--no-such-option"], 2, "No such option"),
        (["data", "show"], 2, "Missing argument"),
        (["data", "show", "chrun"], 2, "No data asset named 'chrun'"),
        (["data", "show", "x:0"], 2, "whole number from 1"),
        (["models", "show", "m@champion"], 2, "No model named 'm'"),
        (["runs", "show", "nope"], 2, "No run with id 'nope'"),
        (["endpoints", "show", "e"], 2, "No endpoint named 'e'"),
        (["data", "ingest", "/no/such.csv", "--name", "x"], 2, "No such file"),
        (["--db-url", "postgresql+psycopg://bob:hunter2@127.0.0.1:1/x", "data", "list"], 2, "bob:***@127.0.0.1:1"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(cli, made: str, args: list[str], code: int, message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", made, *args)
    assert result.code == code
    assert message in result.err
    assert "hunter2" not in result.err + result.out
    assert "Traceback" not in result.err


def test_errors_in_json_mode_are_one_json_object(cli, made: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", made, "data", "show", "nope", "--json")
    assert result.code == 2
    assert result.json["error"]["code"] == "not_found"


def test_a_file_as_workspace_exits_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    file = tmp_path / "file"
    file.write_text("")
    result = cli("--home", str(file), "runs", "list")
    assert result.code == 2
    assert "is a file, not a folder" in result.err


def test_environment_selects_the_workspace(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "from-env"))
    assert cli("init", "--json").json["home"] == str(tmp_path / "from-env")
    assert cli("init", "--json").json["origin"]["home"] == "env"


def test_empty_listings_say_what_to_do(cli, made: str) -> None:  # type: ignore[no-untyped-def]
    assert "conveyor data ingest" in cli("--home", made, "data", "list").out
    assert "quickstart" in cli("--home", made, "runs", "list").out
    assert "quickstart" in cli("--home", made, "models", "list").out
    assert "endpoints deploy" in cli("--home", made, "endpoints", "list").out
