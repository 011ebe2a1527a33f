"""Datastores: named places data comes from (a folder, a bucket, a database, a web server).

A datastore's URL is stored without secrets. Credentials are *references*, resolved only when a connection
is made: ``{"password": "env:PGPASSWORD"}`` (an environment variable) or ``{"password": "secret:wh-pw"}`` (a
secret of the workspace, encrypted at rest: ``conveyor secrets set``) for a database, ``{"key":
"env:AWS_ACCESS_KEY_ID", "secret": "secret:aws-secret"}`` for an object store.
"""

from __future__ import annotations

import builtins
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit

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
_REFERENCE_SCHEMES = ("env", "secret")


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


def resolve_reference(
    name: str,
    reference: str,
    env: Mapping[str, str] | None = None,
    secrets: Callable[[str], str] | None = None,
) -> str:
    """The value a credential reference (``env:VAR`` or ``secret:NAME``) points at.

    Raises:
        BadInput: the reference has an unknown scheme, the variable is not set, or a secret is referenced
            where no secret store is given.
        NotFound: the secret does not exist (the message says how to set it).
    """
    env = os.environ if env is None else env
    scheme, _, target = reference.partition(":")
    if scheme not in _REFERENCE_SCHEMES or not target:
        raise BadInput(
            f"Credential {name!r} must be a reference such as 'env:VARIABLE' or 'secret:NAME', not {reference!r}; "
            "Conveyor never stores the secret itself in a datastore."
        )
    if scheme == "secret":
        if secrets is None:
            raise BadInput(f"Credential {name!r} names the secret {target!r}, but no secret store is at hand here.")
        return secrets(target)
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
        relative_to: str | os.PathLike[str] | None = None,
    ) -> Datastore:
        """Register a datastore; with ``check``, connect once to prove the URL and credentials work.

        A local folder given as a relative path is made absolute now, against ``relative_to`` (default: the
        current working folder, i.e. the caller's), and stored so: a datastore never depends on the working
        folder of the process that later reads it.

        Raises:
            InvalidReference: the name is not valid.
            BadInput: the URL carries a password, a credential is not a reference, or (with ``check``) a local
                folder does not exist.
            Conflict: a datastore of that name exists.
            StoreUnavailable: ``check`` could not connect.
        """
        validate_name(name, "datastore")
        kind = store_kind(url)
        if kind == "local":
            url = absolute_local_url(url, relative_to)
        if _password_in(url):
            raise BadInput(
                "The URL carries a password; Conveyor never stores secrets. Remove it from the URL and pass "
                "--credential password=secret:NAME (after `conveyor secrets set NAME`) or password=env:VARIABLE."
            )
        for key, reference in (credentials or {}).items():
            scheme = reference.partition(":")[0]
            if scheme not in _REFERENCE_SCHEMES:
                raise BadInput(
                    f"Credential {key!r} must be a reference such as 'env:VARIABLE' or 'secret:NAME', not a "
                    "value; store the value with `conveyor secrets set NAME` and reference it as secret:NAME."
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
        resolved = {k: resolve_reference(k, v, secrets=self._ws.secrets.reveal) for k, v in store.credentials.items()}
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
        if store.kind == "local" and not Path(_local_path(store.url)).expanduser().is_absolute():
            raise BadInput(
                f"Datastore {store.name!r} has the relative path {store.url!r}, which Conveyor will not resolve "
                "against a process's working folder. Remove it and add it again: relative paths are now made "
                "absolute when a datastore is added.",
                datastore=store.name,
            )
        options = {
            **store.options,
            **{k: resolve_reference(k, v, secrets=self._ws.secrets.reveal) for k, v in store.credentials.items()},
        }
        try:
            fs, root = url_to_fs(store.url, **options)
        except (ImportError, ValueError) as exc:
            raise InvalidConfig(f"Cannot open datastore {store.name!r} at {store.url}: {exc}") from exc
        return fs, str(root).rstrip("/") or "/"

    def locate(self, store: Datastore, path: str) -> tuple[Any, str]:
        """``(filesystem, location)`` of ``path`` inside a file datastore, confined to the store's root.

        ``path`` is relative to the root. Absolute paths, URLs, ``..`` segments (also percent-encoded) and, in a
        local folder, symbolic links that resolve outside the root are refused. A local location is returned
        resolved (symbolic links followed), so what is read is what was checked.

        Raises:
            BadInput: the path is empty, absolute, or escapes the root (the message names both).
        """
        fs, root = self.filesystem(store)
        shown_root = store.url if store.kind == "http" else root
        _check_relative_path(store, path, shown_root)
        if store.kind == "http":
            return fs, f"{store.url.rstrip('/')}/{path}"
        if store.kind == "local":
            real_root = Path(root).resolve()
            target = (real_root / path).resolve()
            if target != real_root and not target.is_relative_to(real_root):
                raise BadInput(
                    f"Path {path!r} leads outside datastore {store.name!r}, whose root is {root}: it resolves "
                    f"to {target} through a symbolic link. Only files inside the root can be read; give a path "
                    "inside it.",
                    datastore=store.name,
                    path=path,
                )
            return fs, str(target)
        location = posixpath.normpath(posixpath.join(root, path))
        if not location.startswith(root if root.endswith("/") else root + "/"):
            raise _outside(store, path, root)
        return fs, location

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
        if store.kind == "local":
            if not Path(root).is_dir():
                what = "a file, not a folder" if Path(root).exists() else "missing"
                raise BadInput(
                    f"Datastore {store.name!r} points at {root}, which is {what}. A local datastore is a folder: "
                    "create it first, or give the path of an existing folder.",
                    datastore=store.name,
                    path=root,
                )
            return
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


def absolute_local_url(url: str, relative_to: str | os.PathLike[str] | None = None) -> str:
    """A local datastore URL (a path or ``file://`` URL) with its path made absolute and normalised (``~``
    expanded, ``..`` folded), against ``relative_to`` or the current working folder."""
    prefix = "file://" if url[:7].lower() == "file://" else ""
    path = Path(_local_path(url)).expanduser()
    if not path.is_absolute():
        path = Path(relative_to if relative_to is not None else Path.cwd()).expanduser().absolute() / path
    return prefix + os.path.normpath(path)


def _local_path(url: str) -> str:
    return url[7:] if url[:7].lower() == "file://" else url


_SEPARATORS = re.compile(r"[/\\]")


def _check_relative_path(store: Datastore, path: str, root: str) -> None:
    """Refuse a path that is not plainly relative to a datastore's root: empty, absolute, a URL, ``..``."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise BadInput(
            f"Give the path of a file inside datastore {store.name!r} (root {root}), such as 'folder/data.csv'; "
            f"got {path!r}.",
            datastore=store.name,
        )
    decoded = path
    for _ in range(3):  # percent-encoding, even doubled, cannot smuggle a '..' or a leading '/'
        decoded = unquote(decoded)
    for text in (path, decoded):
        if "://" in text or text.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[/\\]", text):
            raise BadInput(
                f"Path {path!r} is absolute; a path in datastore {store.name!r} is relative to its root {root} "
                "(for example 'folder/data.csv'). To read another place, add a datastore for it.",
                datastore=store.name,
                path=path,
            )
        if ".." in _SEPARATORS.split(text):
            raise _outside(store, path, root)


def _outside(store: Datastore, path: str, root: str) -> BadInput:
    return BadInput(
        f"Path {path!r} leads outside datastore {store.name!r}, whose root is {root}: '..' segments are not "
        "allowed. Give a path inside the root (for example 'folder/data.csv').",
        datastore=store.name,
        path=path,
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
