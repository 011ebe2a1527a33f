"""Datastores: named places data comes from (a folder, a bucket, a database, a web server).

A datastore's URL is stored without secrets. Credentials are *references*, resolved only when a connection
is made: ``{"password": "env:PGPASSWORD"}`` for a database, ``{"key": "env:AWS_ACCESS_KEY_ID", "secret":
"env:AWS_SECRET_ACCESS_KEY"}`` for an object store. ``env:VAR`` is the only scheme today; the format leaves
room for ``secret:NAME`` when the encrypted secret store arrives, without changing stored datastores.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa

from conveyor.errors import BadInput, Conflict, InvalidConfig, NotFound, StoreUnavailable, did_you_mean
from conveyor.refs import validate_name
from conveyor.store._schema import DatastoreRow

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from conveyor.workspace import Workspace

__all__ = ["Datastore", "Datastores", "StoreKind", "resolve_reference"]

StoreKind = Literal["local", "fsspec", "http", "sql"]
_SQL_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "sqlite")
_REFERENCE_SCHEMES = ("env",)


@dataclass(frozen=True)
class Datastore:
    id: str
    name: str
    kind: StoreKind
    url: str
    options: dict[str, Any]
    credentials: dict[str, str]
    description: str
    created_at: datetime
    created_by: str


def store_kind(url: str) -> StoreKind:
    """What kind of store a URL names: a SQLAlchemy URL, http(s), another fsspec protocol, or a local path."""
    if "://" not in url:
        return "local"
    scheme = url.split("://", 1)[0].lower()
    if scheme.split("+", 1)[0] in _SQL_SCHEMES:
        return "sql"
    if scheme in ("http", "https"):
        return "http"
    if scheme == "file":
        return "local"
    return "fsspec"


def resolve_reference(name: str, reference: str, env: Mapping[str, str] | None = None) -> str:
    """The value a credential reference (``env:VAR``) points at.

    Raises:
        BadInput: the reference has an unknown scheme or the variable is not set.
    """
    env = os.environ if env is None else env
    scheme, _, target = reference.partition(":")
    if scheme not in _REFERENCE_SCHEMES or not target:
        raise BadInput(
            f"Credential {name!r} must be a reference such as 'env:VARIABLE', not {reference!r}; "
            "Conveyor never stores the secret itself."
        )
    if target not in env:
        raise BadInput(f"Credential {name!r} comes from the environment variable {target}, which is not set. Set it.")
    return env[target]


class Datastores:
    """Datastores, reached as ``ws.datastores``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def add(
        self,
        name: str,
        url: str,
        *,
        options: dict[str, Any] | None = None,
        credentials: dict[str, str] | None = None,
        description: str = "",
        check: bool = True,
    ) -> Datastore:
        """Register a datastore; with ``check``, connect once to prove the URL and credentials work.

        Raises:
            InvalidReference: the name is not valid.
            BadInput: the URL carries a password, or a credential is not a reference.
            Conflict: a datastore of that name exists.
            StoreUnavailable: ``check`` could not connect.
        """
        validate_name(name, "datastore")
        kind = store_kind(url)
        if _password_in(url):
            raise BadInput(
                "The URL carries a password; Conveyor never stores secrets. Remove it from the URL and pass "
                "--credential password=env:VARIABLE (the variable is read when connecting)."
            )
        for key, reference in (credentials or {}).items():
            scheme = reference.partition(":")[0]
            if scheme not in _REFERENCE_SCHEMES:
                raise BadInput(
                    f"Credential {key!r} must be a reference such as 'env:VARIABLE', not a value; "
                    "Conveyor never stores the secret itself."
                )
        store = Datastore("", name, kind, url, dict(options or {}), dict(credentials or {}), description, _now(), "")
        if check:
            self.check(store)
        with self._ws.store.write() as session:
            if session.scalar(sa.select(DatastoreRow.id).filter_by(name=name)) is not None:
                raise Conflict(f"A datastore named {name!r} exists; remove it first or pick another name.")
            row = DatastoreRow(
                name=name,
                kind=kind,
                url=url,
                options=store.options,
                credentials=store.credentials,
                description=description,
                created_by=self._ws.actor,
            )
            session.add(row)
            session.flush()
            return _to_store(row)

    def get(self, name: str) -> Datastore:
        """Raises ``NotFound`` (with "did you mean") for an unknown name."""
        with self._ws.store.read() as session:
            row = session.scalars(sa.select(DatastoreRow).filter_by(name=name)).first()
            if row is None:
                names = session.scalars(sa.select(DatastoreRow.name)).all()
                raise NotFound(
                    f"No datastore named {name!r}.{did_you_mean(name, names)} "
                    "Add one with 'conveyor data store add NAME URL'.",
                    name=name,
                )
            return _to_store(row)

    def list(self) -> builtins.list[Datastore]:
        with self._ws.store.read() as session:
            return [_to_store(r) for r in session.scalars(sa.select(DatastoreRow).order_by(DatastoreRow.name))]

    def remove(self, name: str) -> None:
        self.get(name)
        with self._ws.store.write() as session:
            session.execute(sa.delete(DatastoreRow).where(DatastoreRow.name == name))

    # -- connections ---------------------------------------------------------------------------------

    def sql_engine(self, store: Datastore) -> Engine:
        """A SQLAlchemy engine for a SQL datastore, credentials resolved now.

        Raises:
            BadInput: the datastore is not a database.
            InvalidConfig: the driver is not installed.
        """
        if store.kind != "sql":
            raise BadInput(f"Datastore {store.name!r} is {store.kind}, not a database; --query needs a SQL datastore.")
        url = sa.engine.make_url(store.url)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        elif url.drivername in ("mysql", "mariadb"):
            url = url.set(drivername="mysql+pymysql")
        resolved = {k: resolve_reference(k, v) for k, v in store.credentials.items()}
        if "username" in resolved:
            url = url.set(username=resolved["username"])
        if "password" in resolved:
            url = url.set(password=resolved["password"])
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql" or url.get_backend_name() == "mysql":
            connect_args["connect_timeout"] = 5
        try:
            return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        except (ImportError, sa.exc.NoSuchModuleError) as exc:
            extra = "mysql" if url.get_backend_name() == "mysql" else "postgres"
            raise InvalidConfig(
                f"No driver for {url.render_as_string(hide_password=True)} ({exc}); "
                f"install it with pip install 'conveyor-ml[{extra}]'."
            ) from exc

    def filesystem(self, store: Datastore) -> tuple[Any, str]:
        """``(fsspec filesystem, root path)`` for a file datastore, credentials resolved now."""
        from fsspec.core import url_to_fs

        if store.kind == "sql":
            raise BadInput(f"Datastore {store.name!r} is a database; ingest from it with --query.")
        options = {**store.options, **{k: resolve_reference(k, v) for k, v in store.credentials.items()}}
        try:
            fs, root = url_to_fs(store.url, **options)
        except (ImportError, ValueError) as exc:
            raise InvalidConfig(f"Cannot open datastore {store.name!r} at {store.url}: {exc}") from exc
        return fs, str(root).rstrip("/")

    def check(self, store: Datastore) -> None:
        """Connect once (``SELECT 1`` or a listing).

        Raises:
            StoreUnavailable: the store cannot be reached with these settings.
        """
        if store.kind == "sql":
            engine = self.sql_engine(store)
            try:
                with engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
            except sa.exc.OperationalError as exc:
                raise unreachable(store, exc) from exc
            finally:
                engine.dispose()
            return
        fs, root = self.filesystem(store)
        try:
            if store.kind == "http":
                fs.info(store.url)
            elif not fs.exists(root):
                raise FileNotFoundError(root)
        except (OSError, ValueError) as exc:
            raise unreachable(store, exc) from exc


def unreachable(store: Datastore, exc: BaseException) -> StoreUnavailable:
    """The error for a datastore that does not answer (the URL shown without any password)."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0] if str(exc) else type(exc).__name__
    shown = store.url
    if store.kind == "sql":
        shown = sa.engine.make_url(store.url).render_as_string(hide_password=True)
    return StoreUnavailable(
        f"Cannot reach datastore {store.name!r} at {shown}: {reason}. Check that it is running and the URL and "
        "credentials are right.",
        datastore=store.name,
    )


def _password_in(url: str) -> bool:
    try:
        return bool(urlsplit(url).password)
    except ValueError:
        return False


def _now() -> datetime:
    from conveyor.store._schema import utcnow

    return utcnow()


def _to_store(row: DatastoreRow) -> Datastore:
    return Datastore(
        id=row.id,
        name=row.name,
        kind=row.kind,  # type: ignore[arg-type]
        url=row.url,
        options=dict(row.options),
        credentials=dict(row.credentials),
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
    )
