"""Secrets: named values encrypted at rest with the workspace's key, referenced by name (``secret:NAME``).

The key is a Fernet key (AES-128-CBC + HMAC-SHA256, from ``cryptography``) that never enters the database:
``CONVEYOR_SECRET_KEY`` when set (what a team sets on every machine that shares a PostgreSQL workspace),
else the file ``CONVEYOR_KEY_FILE`` or ``<workspace>/secret.key``, created on first use with mode 0600 and
refused when others can read it. Values are never printed, logged or returned by the API; services read
them with :meth:`Secrets.reveal` at the moment they connect. Endpoint keys are stored sealed with the same
key (:meth:`Secrets.seal`).
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from conveyor.errors import BadInput, InvalidConfig, NotFound, did_you_mean
from conveyor.refs import validate_name
from conveyor.store._schema import SecretRow, utcnow

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

    from conveyor.config import Settings
    from conveyor.workspace import Workspace

__all__ = ["KEY_ENV", "KEY_FILE_ENV", "SEALED", "SecretInfo", "Secrets", "load_key"]

KEY_ENV = "CONVEYOR_SECRET_KEY"
KEY_FILE_ENV = "CONVEYOR_KEY_FILE"
KEY_FILE = "secret.key"
SEALED = "enc:"
MAX_SECRET_BYTES = 64 * 1024


@dataclass(frozen=True)
class SecretInfo:
    """A secret as anyone may see it: its name and history, never its value."""

    name: str
    description: str
    created_at: datetime
    created_by: str
    updated_at: datetime


def key_path(settings: Settings) -> Path:
    explicit = os.environ.get(KEY_FILE_ENV)
    return Path(explicit).expanduser() if explicit else settings.home / KEY_FILE


def load_key(settings: Settings, *, create: bool) -> Fernet:
    """The workspace's key, from the environment or the key file (created when ``create`` and missing).

    Raises:
        InvalidConfig: the key is malformed, the file is missing (and not to be created), or the file can be
            read by other users.
    """
    from cryptography.fernet import Fernet

    value = os.environ.get(KEY_ENV)
    origin = f"the environment variable {KEY_ENV}"
    if not value:
        path = key_path(settings)
        origin = f"the key file {path}"
        if not path.exists():
            if not create:
                raise InvalidConfig(
                    f"This workspace has no secret key yet ({path} does not exist), so nothing encrypted can be "
                    f"read. Set {KEY_ENV} to the key the secrets were made with, or `conveyor secrets set` one."
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it first; read theirs
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(Fernet.generate_key() + b"\n")
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidConfig(
                f"The key file {path} can be read or written by other users (mode {stat.S_IMODE(mode):04o}); "
                f"restrict it with `chmod 600 {path}`."
            )
        value = path.read_text(encoding="ascii").strip()
    try:
        return Fernet(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidConfig(
            f"The secret key in {origin} is not a Fernet key (32 url-safe base64-encoded bytes). Generate one "
            "with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`."
        ) from exc


class Secrets:
    """``ws.secrets``: set, list, delete and (for services) reveal named secrets."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def _key(self, *, create: bool) -> Fernet:
        with self._lock:
            if self._fernet is None:
                self._fernet = load_key(self._ws.settings, create=create)
            return self._fernet

    def set(self, name: str, value: str, *, description: str = "") -> SecretInfo:
        """Store ``value`` under ``name`` (replacing an older value), encrypted.

        Raises:
            BadInput: the name is not allowed, or the value is empty or over 64 KiB.
        """
        validate_name(name, kind="secret")
        if not value:
            raise BadInput(f"The value of secret {name!r} is empty; give a value (from stdin or the prompt).")
        if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
            raise BadInput(f"The value of secret {name!r} is over {MAX_SECRET_BYTES // 1024} KiB.")
        ciphertext = self._key(create=True).encrypt(value.encode("utf-8")).decode("ascii")
        with self._ws.store.write() as session:
            row = session.scalar(sa.select(SecretRow).filter_by(name=name))
            if row is None:
                row = SecretRow(name=name, ciphertext=ciphertext, description=description, created_by=self._ws.actor)
                session.add(row)
            else:
                row.ciphertext = ciphertext
                row.updated_at = utcnow()
                if description:
                    row.description = description
            session.flush()
            return _info(row)

    def list(self) -> list[SecretInfo]:
        with self._ws.store.read() as session:
            return [_info(row) for row in session.scalars(sa.select(SecretRow).order_by(SecretRow.name))]

    def get(self, name: str) -> SecretInfo:
        """Raises: NotFound: no such secret."""
        with self._ws.store.read() as session:
            return _info(self._row(session, name))

    def delete(self, name: str) -> None:
        """Raises: NotFound: no such secret."""
        with self._ws.store.write() as session:
            session.delete(self._row(session, name))

    def reveal(self, name: str) -> str:
        """The value of a secret, for a service about to use it; never print or return it.

        Raises:
            NotFound: no such secret (the message says how to set it).
            InvalidConfig: the key is missing or is not the one the secret was encrypted with.
        """
        with self._ws.store.read() as session:
            ciphertext = self._row(session, name).ciphertext
        return self._decrypt(ciphertext, what=f"secret {name!r}")

    def seal(self, value: str) -> str:
        """``value`` encrypted for storage in a column (``enc:`` + Fernet token)."""
        return SEALED + self._key(create=True).encrypt(value.encode("utf-8")).decode("ascii")

    def unseal(self, stored: str) -> str:
        """The clear value of a sealed column (a value stored in clear before sealing existed is returned as is)."""
        if not stored.startswith(SEALED):
            return stored
        return self._decrypt(stored[len(SEALED) :], what="a sealed value")

    def _decrypt(self, ciphertext: str, *, what: str) -> str:
        from cryptography.fernet import InvalidToken

        try:
            return self._key(create=False).decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise InvalidConfig(
                f"Cannot decrypt {what}: it was encrypted with another key than this workspace's "
                f"({KEY_ENV} or {key_path(self._ws.settings)}). Use the key it was made with, or set it again."
            ) from exc

    def _row(self, session: sa.orm.Session, name: str) -> SecretRow:
        row = session.scalar(sa.select(SecretRow).filter_by(name=name))
        if row is None:
            names = list(session.scalars(sa.select(SecretRow.name)))
            raise NotFound(
                f"No secret {name!r}.{did_you_mean(name, names)} Set it with `conveyor secrets set {name}` "
                "(the value is read from stdin or a prompt)."
            )
        return row


def _info(row: SecretRow) -> SecretInfo:
    return SecretInfo(row.name, row.description, row.created_at, row.created_by, row.updated_at)
