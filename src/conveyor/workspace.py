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
from types import TracebackType
from typing import TYPE_CHECKING, Any

from conveyor.config import Settings, resolve_settings
from conveyor.errors import InvalidConfig
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
    ) -> Workspace:
        """Open (creating on first use) the workspace that the arguments, environment or defaults name.

        Raises:
            InvalidConfig: the workspace path is a file, or its configuration is wrong.
            StoreUnavailable: the database or artifact store cannot be reached.
        """
        settings = resolve_settings(home, db_url=db_url, artifacts_url=artifacts_url)
        return cls._open_settings(settings)

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
    def _open_settings(cls, settings: Settings) -> Workspace:
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidConfig(
                f"Cannot create the workspace folder {str(settings.home)!r}: {exc.strerror}. "
                "Choose a folder you can write with --home or CONVEYOR_HOME."
            ) from exc
        store = MetadataStore(settings.db_url, url_origin=settings.origin.get("db_url", "default")).open()
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
