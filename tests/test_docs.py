"""The documentation that is generated stays in step with the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    typer = Path(sys.executable).parent / "typer"
    subprocess.run(
        [str(typer), "conveyor.cli._app", "utils", "docs", "--name", "conveyor", "--title", "Command-line reference",
         "--output", str(out)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert out.read_text() == (ROOT / "docs" / "cli.md").read_text(), "run 'make docs' and commit docs/cli.md"


def test_readme_gives_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:15])
    assert "make quickstart" in first_screen
    assert "make test" in first_screen
    assert "make test" in (ROOT / ".ci" / "run").read_text()


#: README commands that are not run by the examples test, and why (everything else runs as printed).
NOT_RUN = {
    "conveyor quickstart": "the test made the workspace with it",
    "conveyor quickstart --no-serve --json": "the test made the workspace with it",
    "conveyor quickstart --loop": "tests/test_quickstart.py runs the loop on its own workspace",
    "conveyor init": "the workspace exists (init is idempotent; tests/cli covers it)",
    "conveyor server": "serves until stopped (tests/test_quickstart.py and tests/api cover it)",
    "conveyor pipeline run my_project.pipelines:churn --param k=v": "my_project is the reader's own package",
    "conveyor apply -f pipeline.yaml": "pipeline.yaml is the reader's own file",
    "conveyor drift model:churn@champion today.parquet": "today.parquet is the reader's own file",
    "conveyor train --data churn@latest --target churned --time-budget 60 --register churn": (
        "a 60 s search; the quickstart trains the same way under a 10 s budget"
    ),
}
_PLACEHOLDER = re.compile(r"(?<![\w@:./-])[A-Z][A-Z_0-9]*(?![\w])|\.\.\.")


def readme_commands() -> list[str]:
    """Every ``conveyor`` command the README shows (code blocks and table cells), optional ``[...]`` parts left
    out; those with placeholders (NAME, FILE, ...) are templates, not examples, and are left out too."""
    import click
    import typer

    from conveyor.cli._app import app

    text = (ROOT / "README.md").read_text()
    root = typer.main.get_command(app)
    groups = set(root.list_commands(click.Context(root)))  # type: ignore[attr-defined]
    found: list[str] = []
    for block in re.findall(r"```(?:bash|console)?\n(.*?)```", text, re.S):
        found += [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("conveyor ")]
    for span in re.findall(r"`([^`\n]+)`", text):
        words = span.split()
        if words and (words[0] == "conveyor" or (words[0] in groups and len(words) > 1)):
            found.append(span if words[0] == "conveyor" else f"conveyor {span}")
    cleaned = [re.sub(r"\s*\[[^\]]*\]", "", c).strip() for c in found]
    return [c for c in dict.fromkeys(cleaned) if not _PLACEHOLDER.search(c) and c not in NOT_RUN]


def test_the_readme_examples_are_found() -> None:
    commands = readme_commands()
    assert "conveyor runs list" in commands and "conveyor models show churn@champion" in commands
    assert any(c.startswith("conveyor runs search") for c in commands)
    assert not [c for c in commands if "NAME" in c or "[" in c]
