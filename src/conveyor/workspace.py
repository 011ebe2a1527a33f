"""The workspace: one metadata database and one artifact store, and the services that use them.

``Workspace.open()`` is the SDK's entry point::

    import conveyor
    ws = conveyor.Workspace.open()          # or .open("path/to/workspace"), or with db_url=/artifacts_url=
    version = ws.data.ingest("churn.csv", name="churn").version
    with ws.runs.start(experiment="churn") as run:
        ...
    ws.models.get("churn@champion")
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from conveyor.config import Settings, resolve_settings
from conveyor.errors import InvalidConfig, NotFound
from conveyor.store import ArtifactStore, MetadataStore

if TYPE_CHECKING:
    from conveyor.data import DataAssets, Datastores
    from conveyor.governance import AuditLog, Cards, Identities, Lineage, Secrets
    from conveyor.governance._context import Principal
    from conveyor.monitor import Monitors
    from conveyor.pipelines import Pipelines
    from conveyor.registry import Registry
    from conveyor.serve import Endpoints
    from conveyor.serve._batch import BatchScoring
    from conveyor.tracking import Tracking
    from conveyor.train import Training

__all__ = ["Workspace"]


class Workspace:
    """An open workspace. Create it with :meth:`open` or :meth:`init`; close it with :meth:`close` (or use
    it as a context manager).

    Attributes:
        settings: where everything lives.
        store: the metadata database.
        artifacts: the content-addressed artifact store and data lake.
        principal: who acts now (see :attr:`principal`); ``actor`` is its name.
    """

    def __init__(self, settings: Settings, store: MetadataStore, artifacts: ArtifactStore) -> None:
        from conveyor.governance._audit import audit_hook
        from conveyor.governance._context import local_principal

        self.settings = settings
        self.store = store
        self.artifacts = artifacts
        self._principal = local_principal("sdk")
        store.on_write(audit_hook(store.dialect, lambda: self._principal))

    @property
    def principal(self) -> Principal:
        """Who acts now: the principal a face set for this context (an API caller, the CLI's user), else the
        OS user through the SDK."""
        from conveyor.governance._context import current_principal

        return current_principal() or self._principal

    @property
    def actor(self) -> str:
        """The name changes made now are recorded under (``created_by``)."""
        return self.principal.name

    # -- opening -------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        db_url: str | None = None,
        artifacts_url: str | None = None,
        create: bool = True,
    ) -> Workspace:
        """Open the workspace that the arguments, environment or defaults name, creating it on first use.

        With ``create=False`` (the ``conveyor`` command's way for everything but ``init`` and ``quickstart``) only
        a workspace that exists is opened: a misspelt path is an error naming where it looked, not a new empty
        workspace.

        Raises:
            NotFound: ``create`` is false and there is no workspace there (no database holding Conveyor's tables).
            InvalidConfig: the workspace path is a file or cannot be written, its configuration is wrong, or a
                newer Conveyor made it.
            StoreUnavailable: the database or artifact store cannot be reached.
        """
        settings = resolve_settings(home, db_url=db_url, artifacts_url=artifacts_url)
        return cls._open_settings(settings, create=create)

    @classmethod
    def init(
        cls,
        home: str | os.PathLike[str] | None = None,
        *,
        db_url: str | None = None,
        artifacts_url: str | None = None,
    ) -> tuple[Workspace, bool]:
        """Create a workspace, or open it if it exists; returns it and whether ``conveyor.toml`` was written.

        URLs given here are written into ``conveyor.toml`` so later commands use them without flags; a
        password is never written (use ``${VAR}`` in its place).

        Raises:
            InvalidConfig: the path is a file, or a URL carries a password.
            StoreUnavailable: the database or artifact store cannot be reached.
        """
        settings = resolve_settings(home, db_url=db_url, artifacts_url=artifacts_url)
        config_path = settings.config_path
        created = False
        if not config_path.exists():
            for url in (db_url, artifacts_url):
                if url and _has_password(url):
                    raise InvalidConfig(
                        "Refusing to write a password into conveyor.toml. Put ${VAR} where the password goes "
                        "(e.g. postgresql+psycopg://user:${PGPASSWORD}@host/db) so it is read from the "
                        "environment, or pass the URL through CONVEYOR_DB_URL instead."
                    )
            settings.home.mkdir(parents=True, exist_ok=True)
            config_path.write_text(_config_text(db_url, artifacts_url), encoding="utf-8")
            created = True
        return cls._open_settings(settings), created

    @classmethod
    def _open_settings(cls, settings: Settings, *, create: bool = True) -> Workspace:
        database = _sqlite_file(settings.db_url)
        if not create and database is not None and not database.is_file():
            raise _no_workspace(settings, database)
        if database is not None:
            _check_writable(database)
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidConfig(
                f"Cannot create the workspace folder {str(settings.home)!r}: {exc.strerror}. "
                "Choose a folder you can write with --home or CONVEYOR_HOME."
            ) from exc
        store = MetadataStore(settings.db_url, url_origin=settings.origin.get("db_url", "default"))
        try:
            store.open(create=create)
        except NotFound as exc:  # the database answers but holds no workspace
            raise _no_workspace(settings, database) from exc
        try:
            artifacts = ArtifactStore(settings.artifacts_url, dict(settings.artifacts_options)).open()
        except BaseException:
            store.close()
            raise
        artifacts.sweep_scratch()  # what killed writers left in scratch: one listing, owners checked by PID
        return cls(settings, store, artifacts)

    def close(self) -> None:
        if "runs" in self.__dict__:  # store what runs logged before the store closes
            self.runs.close()
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.settings.home)!r})"

    # -- services ------------------------------------------------------------------------------------

    @cached_property
    def data(self) -> DataAssets:
        """Data assets and versions."""
        from conveyor.data import DataAssets

        return DataAssets(self)

    @cached_property
    def datastores(self) -> Datastores:
        """Named data sources: folders, buckets, databases, web servers."""
        from conveyor.data import Datastores

        return Datastores(self)

    @cached_property
    def pipelines(self) -> Pipelines:
        """Pipelines and their runs."""
        from conveyor.pipelines import Pipelines

        return Pipelines(self)

    @cached_property
    def runs(self) -> Tracking:
        """Experiments and runs."""
        from conveyor.tracking import Tracking

        return Tracking(self)

    @cached_property
    def train(self) -> Training:
        """Training: AutoML under a time budget."""
        from conveyor.train import Training

        return Training(self)

    @cached_property
    def models(self) -> Registry:
        """The model registry."""
        from conveyor.registry import Registry

        return Registry(self)

    @cached_property
    def endpoints(self) -> Endpoints:
        """Online endpoints and their deployments."""
        from conveyor.serve import Endpoints

        return Endpoints(self)

    @cached_property
    def batch(self) -> BatchScoring:
        """Batch scoring: a model version over a data version, into a new data version."""
        from conveyor.serve._batch import BatchScoring

        return BatchScoring(self)

    @cached_property
    def monitors(self) -> Monitors:
        """Drift, reference profiles, and monitors of endpoints (alerts, feedback, the retraining loop)."""
        from conveyor.monitor import Monitors

        return Monitors(self)

    @cached_property
    def lineage(self) -> Lineage:
        """The lineage graph."""
        from conveyor.governance import Lineage

        return Lineage(self.store)

    @cached_property
    def identities(self) -> Identities:
        """Users, roles and API tokens."""
        from conveyor.governance import Identities

        return Identities(self)

    @cached_property
    def audit(self) -> AuditLog:
        """The hash-chained audit log of every change."""
        from conveyor.governance import AuditLog

        return AuditLog(self.store)

    @cached_property
    def cards(self) -> Cards:
        """Model cards: owner, intended use, data, evaluation, explanations, fairness, guardrails, lineage."""
        from conveyor.governance import Cards

        return Cards(self)

    @cached_property
    def secrets(self) -> Secrets:
        """Named secrets, encrypted at rest."""
        from conveyor.governance import Secrets

        return Secrets(self)

    def describe(self) -> dict[str, Any]:
        """Where this workspace keeps things (passwords masked)."""
        from conveyor.store import mask_url

        return {
            "home": str(self.settings.home),
            "config": str(self.settings.config_path),
            "db_url": mask_url(self.settings.db_url),
            "db_backend": self.store.dialect,
            "artifacts_url": self.settings.artifacts_url,
            "origin": dict(self.settings.origin),
        }


def _sqlite_file(db_url: str) -> Path | None:
    """The file of an SQLite database URL; None for another database or one in memory."""
    if not db_url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db_url)
    except ArgumentError:
        return None  # the store says what is wrong with it
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _check_writable(database: Path) -> None:
    """Refuse an SQLite workspace whose folder or files this user cannot write: SQLite writes its journal
    (``-wal``, ``-shm``) beside the database even to read, and fails later with a less helpful message.

    Raises:
        InvalidConfig: the database, its journal or its folder is read-only for this user.
    """
    folder = database.parent
    if not folder.is_dir():
        return
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise InvalidConfig(
                f"The workspace database file {str(path)!r} is read-only for this user. Conveyor writes to it even to "
                f"read (SQLite's journal): make it writable (chmod u+w {str(path)!r}, or run as its owner), or copy "
                "the workspace folder somewhere you can write and use --home.",
                path=str(path),
            )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidConfig(
            f"The workspace folder {str(folder)!r} is read-only for this user. Conveyor writes there even to read "
            f"(SQLite's journal beside {database.name}): make it writable (chmod u+w {str(folder)!r}, or run as its "
            "owner), or copy the workspace folder somewhere you can write and use --home.",
            path=str(folder),
        )


def _no_workspace(settings: Settings, database: Path | None) -> NotFound:
    """The error for a workspace that does not exist: where it was looked for, and how to create one."""
    from conveyor.config import CONFIG_FILE, PROJECT_DIR
    from conveyor.store import mask_url

    home = settings.home
    how = settings.origin.get("home", "default")
    init = f"conveyor init --home {_shell_quote(str(home))}"
    db_named = settings.origin.get("db_url") in ("flag", "env")
    if db_named:
        by = "--db-url" if settings.origin.get("db_url") == "flag" else "CONVEYOR_DB_URL"
        where = f"the database {mask_url(settings.db_url)} (named by {by})"
        found = "it has no Conveyor tables" if database is None else "that file does not exist"
        fix = f"Create one with `{init}` and the same {by}"
    elif how == "default":
        cwd = Path.cwd()
        where = f"{str(cwd)!r} and the folders above it for a {PROJECT_DIR}/ folder, then {str(home)!r}"
        found = "none holds a workspace"
        fix = (
            f"Create one with `{init}` (or `conveyor init --home {PROJECT_DIR}` for a workspace of this project, "
            "found from any folder below it)"
        )
    else:
        by = {"flag": "--home", "env": "CONVEYOR_HOME", "discovered": f"the nearest {PROJECT_DIR}/"}.get(how, how)
        where = f"{str(home)!r} (named by {by})"
        has_config = (home / CONFIG_FILE).is_file()
        found = (
            f"its {CONFIG_FILE} is there but its database {mask_url(settings.db_url)} is missing or empty"
            if has_config
            else f"there is no {CONFIG_FILE} and no database there"
        )
        fix = f"Create one with `{init}`"
    return NotFound(
        f"No Conveyor workspace: looked in {where}; {found}. {fix}, or name an existing workspace with --home or "
        "CONVEYOR_HOME.",
        home=str(home),
        home_from=how,
        db_url=mask_url(settings.db_url),
        create=init,
    )


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _has_password(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return False
    return password is not None and password != "" and not password.startswith("${")


def _config_text(db_url: str | None, artifacts_url: str | None) -> str:
    lines = [
        "# Conveyor workspace settings. Environment variables (CONVEYOR_DB_URL, CONVEYOR_ARTIFACTS_URL) win",
        "# over these; ${VAR} in a value is read from the environment.",
        "[workspace]",
        f"db_url = {_toml_str(db_url)}"
        if db_url
        else '# db_url = "postgresql+psycopg://user:${PGPASSWORD}@host:5432/conveyor"',
        "",
        "[artifacts]",
        f"url = {_toml_str(artifacts_url)}" if artifacts_url else '# url = "s3://bucket/conveyor"',
        '# options = { endpoint_url = "http://127.0.0.1:9000" }',
        "",
        "[server]",
        'host = "127.0.0.1"',
        "port = 8420",
        "",
    ]
    return "\n".join(lines)


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def workspace_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make a child process open the same workspace."""
    import json

    env = {
        "CONVEYOR_HOME": str(settings.home),
        "CONVEYOR_DB_URL": settings.db_url,
        "CONVEYOR_ARTIFACTS_URL": settings.artifacts_url,
    }
    if settings.artifacts_options:
        env["CONVEYOR_ARTIFACTS_OPTIONS"] = json.dumps(dict(settings.artifacts_options))
    return env
