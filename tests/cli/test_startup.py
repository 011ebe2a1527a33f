"""The command line starts without loading what its command does not need.

Loading pandas, scikit-learn, SQLAlchemy and the ORM schema, DuckDB or Rich's Markdown cost seconds on a busy
machine; ``conveyor --help`` and ``--version`` need none of them, and a group's commands load only when the command
line reaches that group. Each check runs a fresh interpreter and reads ``sys.modules`` (no timing: the
``cli-startup`` benchmark measures that).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

#: modules that must stay unloaded for --help and --version
HEAVY = (
    "pandas",
    "numpy",
    "sklearn",
    "pyarrow",
    "duckdb",
    "sqlalchemy",
    "sqlalchemy.orm",
    "alembic",
    "conveyor.store._schema",
    "conveyor.workspace",
    "fastapi",
    "optuna",
    "plotly",
    "markdown_it",
    "pygments",
)


_PROBE = """
import contextlib, io, json, sys
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
{code}
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
heavy = [m for m in {heavy!r} if m in sys.modules]
cli = sorted(m for m in sys.modules if m.startswith("conveyor.cli."))
print(json.dumps({{"code": code, "out": out.getvalue(), "heavy": heavy, "cli": cli}}))
"""


#: modules that listing runs and models must leave unloaded: data and model libraries, PostgreSQL's dialect on
#: SQLite, fsspec for the local artifact folder, migrations, the web stack
NOT_FOR_LISTS = (
    "pandas",
    "numpy",
    "sklearn",
    "pyarrow",
    "duckdb",
    "skops",
    "joblib",
    "fsspec",
    "alembic",
    "sqlalchemy.dialects.postgresql",
    "ulid",
    "fastapi",
    "pydantic",
    "plotly",
    "markdown_it",
    "pygments",
)


def _loaded_after(code: str, heavy: tuple[str, ...] = HEAVY) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter: its exit status, what it printed, which of ``heavy`` and of Conveyor's
    command modules it loaded."""
    script = _PROBE.format(code=textwrap.indent(code, " " * 8), heavy=heavy)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_importing_the_command_line_loads_nothing_heavy() -> None:
    result = _loaded_after("import conveyor.cli._app")
    assert result["heavy"] == []


@pytest.mark.parametrize("argv", [["--help"], ["-h"], []])
def test_help_loads_nothing_heavy_and_no_command_group(argv: list[str]) -> None:
    result = _loaded_after(f"from conveyor.cli import main\nmain({argv!r})")
    assert result["code"] in (0, 2)  # no arguments: the help, with click's usage exit status
    assert "runs" in str(result["out"]) and "models" in str(result["out"])
    assert result["heavy"] == []
    # commands and groups are listed from their help lines: no command module is imported
    assert set(result["cli"]) == {"conveyor.cli._app", "conveyor.cli._output", "conveyor.cli._state"}  # type: ignore[arg-type]


def test_version_loads_neither_typer_nor_anything_heavy() -> None:
    from conveyor import __version__

    result = _loaded_after(
        "from conveyor.cli import main\nmain(['--version'])\nimport sys\nassert 'typer' not in sys.modules"
    )
    assert result["code"] == 0
    assert result["out"] == f"conveyor {__version__}\n"
    assert result["heavy"] == []


def test_a_group_help_loads_only_that_group() -> None:
    result = _loaded_after("from conveyor.cli import main\nmain(['runs', '--help'])")
    assert result["code"] == 0
    assert "search" in str(result["out"])
    cli = set(result["cli"])  # type: ignore[arg-type]
    assert "conveyor.cli.runs" in cli
    assert not {"conveyor.cli.models", "conveyor.cli.data", "conveyor.cli.endpoints"} & cli
    assert result["heavy"] == []


def test_every_command_module_imports_on_its_own() -> None:
    """A command module imported first (a test, a plugin) must not meet a half-initialised ``_app``."""
    import pkgutil

    import conveyor.cli

    for module in pkgutil.iter_modules(conveyor.cli.__path__):
        done = subprocess.run(
            [sys.executable, "-c", f"import conveyor.cli.{module.name}"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"conveyor.cli.{module.name}: {done.stderr.strip().splitlines()[-1:]}"


def test_the_help_lines_of_top_level_commands_are_their_docstrings_first_sentence() -> None:
    """``conveyor --help`` lists the top-level commands from a table, so that it imports none of them; the table
    must say what each command's own help says."""
    from typer.main import get_command

    from conveyor.cli._app import _COMMANDS, app

    root = get_command(app)
    ctx = root.make_context("conveyor", ["--help"], resilient_parsing=True)
    for name, (_, line) in _COMMANDS.items():
        command = root.get_command(ctx, name)  # type: ignore[attr-defined]
        assert command is not None and command.get_short_help_str(limit=500) == line, name


@pytest.fixture(scope="module")
def listed_workspace(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A workspace with a finished run (params, metrics) and a registered model with an alias."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from conveyor import Workspace

    home = tmp_path_factory.mktemp("listed") / "ws"
    ws, _ = Workspace.init(home)
    with ws:
        with ws.runs.start("startup") as run:
            run.log_param("learner", "linear")
            run.log_metric("auc", 0.9)
        x = np.arange(20, dtype=float).reshape(10, 2)
        ws.models.register("churn", LogisticRegression().fit(x, [0, 1] * 5), run_id=run.id)
        ws.models.set_alias("churn", "champion", 1)
    return str(home)


@pytest.mark.parametrize("group", ["runs", "models"])
def test_listing_loads_no_data_model_or_web_library(listed_workspace: str, group: str) -> None:
    argv = ["--home", listed_workspace, group, "list"]
    result = _loaded_after(f"from conveyor.cli import main\nmain({argv!r})", NOT_FOR_LISTS)
    assert result["code"] == 0, result["out"]
    assert ("finished" if group == "runs" else "champion") in str(result["out"])
    assert result["heavy"] == []


def test_a_command_run_inside_a_process_leaves_its_garbage_collection_alone(listed_workspace: str, cli: Any) -> None:
    """Only the `conveyor` process pauses the cycle collector while the workspace loads and freezes what it made;
    a program (or a test) running a command goes on with its collector as it was."""
    import gc

    frozen = gc.get_freeze_count()
    assert cli("--home", listed_workspace, "runs", "list").code == 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen
