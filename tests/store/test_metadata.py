"""The metadata store on SQLite and PostgreSQL: migrations, units of work, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.errors import InvalidConfig, StoreUnavailable
from conveyor.store import MetadataStore, mask_url
from conveyor.store._schema import SCHEMA_REVISION, Base, ExperimentRow


def test_open_creates_the_schema_at_the_current_revision(db_url: str) -> None:
    store = MetadataStore(db_url).open()
    try:
        with store.engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        assert set(Base.metadata.tables) <= tables
        assert revision == SCHEMA_REVISION
    finally:
        store.close()


def test_migrations_match_the_models(db_url: str) -> None:
    """Autogenerate finds nothing to add: the migration scripts create exactly what the models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = MetadataStore(db_url).open()
    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
    finally:
        store.close()


def test_schema_revision_is_the_migration_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "conveyor.store:migrations")
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION


def test_reopening_is_idempotent(db_url: str) -> None:
    for _ in range(3):
        store = MetadataStore(db_url).open()
        store.close()


def test_a_failed_write_leaves_nothing(db_url: str) -> None:
    store = MetadataStore(db_url).open()
    try:
        with pytest.raises(RuntimeError), store.write() as session:
            session.add(ExperimentRow(name="half-written"))
            session.flush()
            raise RuntimeError("crash in the middle of a unit of work")
        with store.read() as session:
            assert session.scalars(sa.select(ExperimentRow.name)).all() == []
    finally:
        store.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'x.db'}").open()
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        store.close()


def test_a_database_with_a_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    MetadataStore(url).open().close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(InvalidConfig, match=r"schema revision 9999, newer than this Conveyor's"):
        MetadataStore(url).open()


def test_unreachable_postgres_names_the_url_without_its_password() -> None:
    url = "postgresql+psycopg://alice:s3cret@127.0.0.1:1/conveyor"
    with pytest.raises(StoreUnavailable) as info:
        MetadataStore(url, url_origin="env").open()
    message = str(info.value)
    assert "s3cret" not in message
    assert "postgresql+psycopg://alice:***@127.0.0.1:1/conveyor" in message
    assert "CONVEYOR_DB_URL" in message
    assert info.value.exit_code == 2


def test_unsupported_and_malformed_urls_are_config_errors() -> None:
    with pytest.raises(InvalidConfig, match="supports sqlite, postgresql"):
        MetadataStore("oracle://scott@db/orcl").open()
    with pytest.raises(InvalidConfig, match="does not parse"):
        MetadataStore("not a url").open()


def test_mask_url_hides_only_the_password() -> None:
    assert mask_url("postgresql+psycopg://u:pw@h:5432/d") == "postgresql+psycopg://u:***@h:5432/d"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_upgrading_keeps_existing_rows(db_url: str) -> None:
    """A workspace made by an older Conveyor (schema 0001) is migrated on open without losing data."""
    from alembic import command
    from alembic.config import Config

    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        config = Config()
        config.set_main_option("script_location", "conveyor.store:migrations")
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(
            sa.text(
                "INSERT INTO data_assets (id, name, description, created_at, created_by) "
                "VALUES ('a1', 'old', '', CURRENT_TIMESTAMP, 'me')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO data_versions (id, asset_id, version, content_hash, rows, bytes, schema, files, source, "
                "created_at, created_by) VALUES ('v1', 'a1', 1, 'sha256:x', 3, 10, '[]', '[]', '{}', "
                "CURRENT_TIMESTAMP, 'me')"
            )
        )
    engine.dispose()
    store = MetadataStore(db_url).open()
    try:
        from conveyor.store._schema import DataVersionRow

        with store.read() as session:
            row = session.get(DataVersionRow, "v1")
            assert row is not None
            assert (row.rows, row.parents, row.profile) == (3, [], None)
    finally:
        store.close()


def test_metric_history_moves_into_chunks_and_back(db_url: str, tmp_path: Path) -> None:
    """0005 turns one row per metric value into chunks (and fills the latest-value table); downgrading
    turns them back into rows. Histories survive both ways."""
    from alembic import command
    from alembic.config import Config

    from conveyor import Workspace

    if db_url.startswith("sqlite:///"):
        Path(db_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url)
    config = Config()
    config.set_main_option("script_location", "conveyor.store:migrations")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0004")
        conn.execute(
            sa.text(
                "INSERT INTO experiments (id, name, created_at, created_by) VALUES ('e1', 'old', CURRENT_TIMESTAMP, '')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, experiment_id, name, status, started_at, created_at, created_by) "
                "VALUES ('r1', 'e1', '', 'finished', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '')"
            )
        )
        for step, value in [(0, 0.9), (2, 0.5), (1, 0.7)]:
            conn.execute(
                sa.text(
                    "INSERT INTO run_metrics (run_id, key, value, step, timestamp) "
                    "VALUES ('r1', 'loss', :v, :s, CURRENT_TIMESTAMP)"
                ),
                {"v": value, "s": step},
            )
    engine.dispose()
    ws = Workspace.open(tmp_path / "ws", db_url=db_url)
    try:
        assert [(m.step, m.value) for m in ws.runs.metric_history("r1", "loss")] == [(0, 0.9), (1, 0.7), (2, 0.5)]
        assert ws.runs.get("r1").metrics == {"loss": 0.5}
        assert [r.id for r in ws.runs.search("metrics.loss < 0.6").runs] == ["r1"]
    finally:
        ws.close()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
        rows = conn.execute(sa.text("SELECT step, value FROM run_metrics WHERE run_id = 'r1' ORDER BY step")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(0, 0.9), (1, 0.7), (2, 0.5)]
