"""Write a new Alembic revision by comparing the models in ``store/_schema.py`` with the current head.

Usage: ``.venv/bin/python tools/new_migration.py "add monitors"`` (or ``make migration m="add monitors"``).
It migrates a throw-away SQLite database to the current head, autogenerates the difference, and writes
``src/conveyor/store/migrations/versions/NNNN_<slug>.py``. Review it, then bump ``SCHEMA_REVISION``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def main(message: str) -> None:
    config = Config()
    config.set_main_option("script_location", "conveyor.store:migrations")
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    number = 1 if head is None else int(head) + 1
    revision = f"{number:04d}"
    versions = Path(script.versions)
    with tempfile.TemporaryDirectory() as tmp:
        engine = sa.create_engine(f"sqlite:///{tmp}/scratch.db")
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            slug = re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_")
            config.attributes["connection"] = conn
            command.revision(config, message=message, autogenerate=True, rev_id=revision)
        engine.dispose()
    for path in versions.glob(f"{revision}_*.py"):
        target = versions / f"{revision}_{slug}.py"
        # Autogenerate renders JSONB's default text type unqualified; qualify it so the file imports.
        target.write_text(path.read_text().replace("astext_type=Text()", "astext_type=sa.Text()"))
        if target != path:
            path.unlink()
        subprocess.run([sys.executable, "-m", "ruff", "check", "--fix", "-q", str(target)], check=False)
        subprocess.run([sys.executable, "-m", "ruff", "format", str(target)], check=False)
    print(f"wrote {versions}/{revision}_{slug}.py; now set SCHEMA_REVISION = {revision!r} in store/_schema.py")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
