"""The metadata database: engine set-up per backend, migrations on open, and units of work.

SQLite (embedded default) runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue for the lock instead of failing when a read transaction
tries to upgrade. PostgreSQL uses ``SELECT ... FOR UPDATE`` on the parent row where a version number is
allocated. Migrations run under a cross-process lock (a file lock beside the SQLite file, an advisory
lock on PostgreSQL), so many processes can open a new workspace at once.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from conveyor.errors import ConveyorError, InvalidConfig, NotFound, StoreError, StoreUnavailable
from conveyor.store._schema import SCHEMA_REVISION

__all__ = ["UNAUDITED_TABLES", "Change", "MetadataStore", "WriteHook", "mask_url"]

#: ``(table, operation, id)`` of one change in a write unit.
Change = tuple[str, str, str]
WriteHook = Callable[[Session, list[Change]], None]

#: Tables whose changes alone are not an action worth auditing: metric values (the tracking writer's
#: bookkeeping), lineage edges (always written with the entity they describe), stream checkpoints, and the
#: audit log itself.
UNAUDITED_TABLES = frozenset(
    {"audit_events", "run_metric_chunks", "run_latest_metrics", "lineage_edges", "ingest_checkpoints"}
)
_CHANGES = "conveyor_changes"

SUPPORTED_DIALECTS = ("sqlite", "postgresql")
_WRITE_OPTION = "conveyor_write"
_ADVISORY_LOCK_KEY = 0x436F6E76  # "Conv"
_SQLITE_BUSY_TIMEOUT_MS = 60_000


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***``."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


class MetadataStore:
    """The workspace's metadata database.

    Args:
        url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg://user@host/db``).
        url_origin: where the URL came from (for error messages: ``env``, ``flag``, ...).
    """

    def __init__(self, url: str, *, url_origin: str = "default") -> None:
        self.url = url
        self.url_origin = url_origin
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._write_sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()
        self._on_write: WriteHook | None = None

    # -- lifecycle -----------------------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise StoreError("The metadata store is not open; call open() first.")
        return self._engine

    def open(self, *, create: bool = True) -> MetadataStore:
        """Connect, check the database answers, and bring its schema up to date.

        With ``create=False`` a database without Conveyor's tables is refused rather than given them.

        Raises:
            InvalidConfig: the URL does not parse, names an unsupported database, or lacks its driver; the
                database's schema revision is one this version of Conveyor does not know (a newer one made it);
                an SQLite database cannot be written.
            NotFound: ``create`` is false and the database holds no Conveyor schema.
            StoreUnavailable: the database cannot be reached.
        """
        with self._lock:
            if self._engine is not None:
                return self
            engine = self._create_engine()
            try:
                self._migrate(engine, create=create)
            except BaseException:
                engine.dispose()
                raise
            self._engine = engine
            self._sessions = sessionmaker(engine, expire_on_commit=False)
            self._write_sessions = sessionmaker(
                engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
            )
            _track_changes(self._write_sessions)
        return self

    def on_write(self, hook: WriteHook | None) -> None:
        """Call ``hook(session, changes)`` at the end of every write unit that changed a table, inside its
        transaction, just before the commit (the audit log uses this to append in the same transaction).

        ``changes`` lists ``(table, operation, id)`` in order; ``id`` is ``"*"`` for a bulk statement.
        Tables in ``UNAUDITED_TABLES`` (derived or high-volume bookkeeping) are left out.
        """
        self._on_write = hook

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._sessions = None
            self._write_sessions = None

    # -- units of work -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; it is rolled back at the end."""
        if self._sessions is None:
            raise StoreError("The metadata store is not open; call open() first.")
        with self._translate_errors(), self._sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextlib.contextmanager
    def write(self, *, audited: bool = True) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back (nothing written) on error.

        ``audited=False`` is for bookkeeping that is not anyone's action (a token's last use).
        """
        if self._write_sessions is None:
            raise StoreError("The metadata store is not open; call open() first.")
        with self._translate_errors(), self._write_sessions() as session, session.begin():
            yield session
            hook = self._on_write
            if hook is not None and audited:
                session.flush()
                changes: list[Change] = session.info.pop(_CHANGES, [])
                if changes:
                    hook(session, changes)

    # -- internals -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            if _is_connection_problem(exc):
                raise StoreUnavailable(self._unreachable_message(exc), url=mask_url(self.url)) from exc
            raise

    def _create_engine(self) -> Engine:
        try:
            url = make_url(self.url)
        except ArgumentError as exc:
            raise InvalidConfig(
                f"The database URL {self.url!r} does not parse ({exc}). Use a SQLAlchemy URL such as "
                "sqlite:////path/conveyor.db or postgresql+psycopg://user@127.0.0.1:5432/conveyor.",
            ) from exc
        backend = url.get_backend_name()
        if backend not in SUPPORTED_DIALECTS:
            raise InvalidConfig(
                f"The database URL {mask_url(url)} uses {backend!r}; Conveyor's metadata store supports "
                f"{', '.join(SUPPORTED_DIALECTS)}. Use sqlite:///... or postgresql+psycopg://...",
            )
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if backend == "sqlite":
            database = url.database or ""
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {
                "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000,
                "check_same_thread": False,
            }
        else:
            if url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            kwargs["connect_args"] = {"connect_timeout": 5}
            kwargs["pool_size"] = 5
        try:
            engine = sa.create_engine(url, **kwargs)
        except (NoSuchModuleError, ModuleNotFoundError) as exc:
            raise InvalidConfig(
                f"No driver for {mask_url(url)} is installed ({exc}). For PostgreSQL install the extra: "
                "pip install 'conveyor-ml[postgres]'.",
            ) from exc
        if backend == "sqlite":
            _configure_sqlite(engine)
        return engine

    def _migrate(self, engine: Engine, *, create: bool = True) -> None:
        # The usual case costs one query: the stored revision is this Conveyor's head. Alembic (its script
        # directory, its migration modules) loads only when there is something to upgrade.
        try:
            with engine.connect() as conn:
                current = _current_revision(conn)
                if current == SCHEMA_REVISION:
                    return
        except OperationalError as exc:
            raise self._open_error(exc, engine.dialect.name) from exc
        if current is None and not create:
            raise NotFound(f"The database {mask_url(self.url)} holds no Conveyor workspace.", url=mask_url(self.url))
        if current is not None and current not in _known_revisions():
            from conveyor._version import __version__

            newer = current > SCHEMA_REVISION
            raise InvalidConfig(
                f"The workspace's database {mask_url(self.url)} has schema revision {current}"
                + (f", newer than this Conveyor's {SCHEMA_REVISION}" if newer else ", unknown to this Conveyor")
                + f" (Conveyor {__version__} knows revisions up to {SCHEMA_REVISION}): "
                + ("a newer Conveyor made or upgraded it. " if newer else "")
                + "Upgrade Conveyor (pip install -U conveyor-ml) to open it; this version does not change it.",
                url=mask_url(self.url),
                revision=current,
                supported=SCHEMA_REVISION,
                conveyor_version=__version__,
            )
        with _migration_lock(engine) as conn:
            if _current_revision(conn) != SCHEMA_REVISION:
                _run_alembic_upgrade(conn)
            conn.commit()

    def _open_error(self, exc: OperationalError, backend: str) -> ConveyorError:
        """What a failure to query the database at open means: a read-only SQLite file, else unreachable."""
        reason = str(exc.orig or exc).lower()
        if backend == "sqlite" and ("readonly" in reason or "unable to open" in reason):
            return InvalidConfig(
                f"Cannot write the workspace database {mask_url(self.url)} ({str(exc.orig or exc).strip()}): SQLite "
                "writes its journal beside the file even to read. Make the file and its folder writable for this "
                "user, or copy the workspace somewhere you can write and use --home.",
                url=mask_url(self.url),
            )
        return StoreUnavailable(self._unreachable_message(exc), url=mask_url(self.url))

    def _unreachable_message(self, exc: OperationalError) -> str:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        where = {
            "env": "CONVEYOR_DB_URL",
            "flag": "--db-url",
            "conveyor.toml": "db_url in conveyor.toml",
        }.get(self.url_origin, "the database URL")
        return (
            f"Cannot reach the metadata database at {mask_url(self.url)}: {reason}. "
            f"Check that the server is running and the URL in {where} is right; to use the embedded "
            "SQLite database instead, leave the URL unset."
        )


def _track_changes(factory: sessionmaker[Session]) -> None:
    """Record, per write session, which rows of which tables each flush and bulk statement changed."""

    @event.listens_for(factory, "after_flush")
    def after_flush(session: Session, _context: Any) -> None:
        changes: list[Change] = session.info.setdefault(_CHANGES, [])
        for operation, objects in (("insert", session.new), ("update", session.dirty), ("delete", session.deleted)):
            for obj in objects:
                table = getattr(obj, "__tablename__", None)
                if table is None or table in UNAUDITED_TABLES:
                    continue
                if operation == "update" and not session.is_modified(obj, include_collections=False):
                    continue
                key = sa.inspect(obj).mapper.primary_key_from_instance(obj)
                changes.append((table, operation, "/".join(str(part) for part in key)))

    @event.listens_for(factory, "do_orm_execute")
    def on_execute(state: Any) -> None:
        if not (state.is_insert or state.is_update or state.is_delete):
            return
        table = getattr(state.statement, "table", None)
        name = getattr(table, "name", None)
        if name is None or name in UNAUDITED_TABLES:
            return
        operation = "insert" if state.is_insert else "update" if state.is_update else "delete"
        state.session.info.setdefault(_CHANGES, []).append((name, operation, "*"))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, so writes can ask for IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
        # Persistent once set; a no-op on later connections. Outside any transaction, as SQLite requires.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _current_revision(conn: Connection) -> str | None:
    try:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        row = conn.execute(sa.text("SELECT version_num FROM alembic_version")).first()
    except ProgrammingError:
        conn.rollback()
        return None
    finally:
        if conn.in_transaction():
            conn.rollback()
    return None if row is None else str(row[0])


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    write_engine = engine.execution_options(**{_WRITE_OPTION: True})
    if engine.dialect.name == "postgresql":
        with write_engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
            conn.commit()
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_LOCK_KEY})
                conn.commit()
        return
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        with write_engine.connect() as conn:
            yield conn
        return
    from filelock import FileLock

    with FileLock(f"{database}.migrate.lock", timeout=120), write_engine.connect() as conn:
        yield conn


@functools.cache
def _known_revisions() -> frozenset[str]:
    """The schema revisions this Conveyor has migrations for (file names ``NNNN_*.py``; Alembic not loaded)."""
    versions = Path(__file__).with_name("migrations") / "versions"
    return frozenset(path.name[:4] for path in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))


def _run_alembic_upgrade(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "conveyor.store:migrations")
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _is_connection_problem(exc: OperationalError) -> bool:
    text = str(exc.orig or exc).lower()
    needles = (
        "connection",
        "connect",
        "could not translate host",
        "timeout",
        "server closed",
        "refused",
    )
    return any(n in text for n in needles) and "database is locked" not in text
