"""Users, roles and API tokens.

A token is ``cvy_`` followed by 43 URL-safe characters (256 random bits). It is shown once, when it is made;
the database keeps its SHA-256 (a fast hash is right for a random secret of that length: there is nothing to
guess) and its first 12 characters so a person can tell tokens apart. Tokens expire (90 days unless told
otherwise) and can be revoked; a disabled user's tokens stop working with them.

A user may also have a password, for the studio's login form only (the REST API takes tokens): it is kept as a
scrypt hash (salt and cost in the stored text; about 50 ms and 16 MB to check, so guessing is slow), and five
wrong passwords for one user from one address lock that pair out for :data:`LOCKOUT_SECONDS`. A right password
issues a session token (``studio session``, valid :data:`SESSION_HOURS` hours) that logging out revokes.

Looking a token up costs one indexed query; the answer is remembered for :data:`CACHE_SECONDS` so a busy API
pays it rarely. Revoking or disabling through this process forgets at once; through another process (the CLI
while a server runs) it takes effect within :data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from conveyor.errors import BadInput, Conflict, NotFound, Unauthorized, did_you_mean
from conveyor.governance._roles import check_role
from conveyor.refs import validate_name
from conveyor.store._schema import TokenRow, UserRow, utcnow

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = [
    "CACHE_SECONDS",
    "LOCKOUT_SECONDS",
    "SESSION_HOURS",
    "Identities",
    "IssuedToken",
    "Token",
    "User",
    "parse_duration",
]

TOKEN_PREFIX = "cvy_"  # noqa: S105 - the prefix every token starts with, not a secret
_TOKEN_RE = re.compile(r"^cvy_[A-Za-z0-9_-]{43}$")
CACHE_SECONDS = 2.0
SESSION_HOURS = 12
LOCKOUT_SECONDS = 300
MAX_FAILURES = 5
MIN_PASSWORD = 10
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
DEFAULT_EXPIRY = timedelta(days=90)
_LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class User:
    id: str
    name: str
    role: str
    disabled: bool
    created_at: datetime
    created_by: str
    has_password: bool = False


@dataclass(frozen=True)
class Token:
    """A token as lists show it: never the secret, only its first characters."""

    id: str
    user: str
    name: str
    prefix: str
    status: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class IssuedToken:
    """A new token: ``secret`` is the only time the token's value is seen."""

    token: Token
    secret: str


@dataclass(frozen=True)
class Caller:
    """Who a valid token belongs to."""

    user_id: str
    name: str
    role: str
    token_id: str


def parse_duration(text: str) -> timedelta | None:
    """``30d``, ``12h``, ``45m``, ``2w`` → a timedelta; ``never`` → None.

    Raises:
        BadInput: the text is none of those.
    """
    value = text.strip().lower()
    if value in ("never", "none", "0"):
        return None
    match = re.fullmatch(r"(\d{1,6})\s*([mhdw])", value)
    if match is None:
        raise BadInput(f"Cannot read the duration {text!r}; write e.g. 30d, 12h, 45m, 2w, or never.")
    amount, unit = int(match.group(1)), match.group(2)
    delta = {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}.get(
        unit, timedelta(weeks=amount)
    )
    if delta <= timedelta(0):
        raise BadInput(f"The duration {text!r} must be positive; write e.g. 30d, or never.")
    return delta


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def password_hash(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex) of a password."""
    salt = secrets.token_bytes(16) if salt is None else salt
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        given = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except (ValueError, OverflowError):
        return False
    return hmac.compare_digest(given.hex(), digest)


@functools.cache
def _dummy_hash() -> str:
    """Checked for an unknown user, so a wrong name takes as long as a wrong password."""
    return password_hash("no such user", salt=b"\0" * 16)


class Identities:
    """``ws.identities``: users, their roles and their tokens."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._cache: dict[str, tuple[float, Caller | None, datetime | None]] = {}
        self._cache_lock = threading.Lock()
        self._last_used: dict[str, datetime] = {}
        self._failures: dict[tuple[str, str], list[float]] = {}

    # -- users ---------------------------------------------------------------------------------------

    def add_user(self, name: str, role: str) -> User:
        """Add a user with a role.

        Raises:
            BadInput: the name or role is not allowed.
            Conflict: a user with that name exists.
        """
        validate_name(name, kind="user")
        check_role(role)
        with self._ws.store.write() as session:
            if session.scalar(sa.select(UserRow.id).filter_by(name=name)) is not None:
                raise Conflict(f"User {name!r} exists; change their role with `conveyor users role {name} ROLE`.")
            row = UserRow(name=name, role=role, created_by=self._ws.actor)
            session.add(row)
            session.flush()
            return _user(row)

    def users(self) -> list[User]:
        with self._ws.store.read() as session:
            return [_user(row) for row in session.scalars(sa.select(UserRow).order_by(UserRow.name))]

    def get_user(self, name: str) -> User:
        """Raises: NotFound: no such user."""
        with self._ws.store.read() as session:
            return _user(self._user_row(session, name))

    def set_role(self, name: str, role: str) -> User:
        """Change a user's role; their tokens carry the new role from the next request."""
        check_role(role)
        return self._change_user(name, role=role)

    def disable(self, name: str) -> User:
        """Disable a user: their tokens stop working (they are kept, and work again if re-enabled)."""
        return self._change_user(name, disabled=True)

    def enable(self, name: str) -> User:
        """Enable a disabled user again."""
        return self._change_user(name, disabled=False)

    def _change_user(self, name: str, *, role: str | None = None, disabled: bool | None = None) -> User:
        with self._ws.store.write() as session:
            row = self._user_row(session, name)
            if role is not None:
                row.role = role
            if disabled is not None and disabled != (row.disabled_at is not None):
                row.disabled_at = utcnow() if disabled else None
            session.flush()
            user = _user(row)
        self._forget()  # cached token checks carry the old role or state
        return user

    def bootstrap(self) -> IssuedToken | None:
        """On a workspace with no users: add the OS user as ``admin`` and issue their first token (shown once).
        Returns None when users exist already."""
        name = self._first_admin()
        return None if name is None else self.create_token(name, name="initial")

    def local_user(self) -> str:
        """The user name of whoever runs this process (the OS user, as a valid name); on a workspace with no
        users yet they are added as ``admin`` first (whoever can open the workspace's files holds it already)."""
        self._first_admin()
        return _os_user_name()

    def _first_admin(self) -> str | None:
        """Add the OS user as ``admin`` when there are no users; their name, or None when users existed."""
        with self._ws.store.read() as session:
            if session.scalar(sa.select(sa.func.count()).select_from(UserRow)):
                return None
        name = _os_user_name()
        try:
            self.add_user(name, "admin")
        except Conflict:
            return None
        return name

    # -- passwords (the studio's login form) ---------------------------------------------------------

    def set_password(self, name: str, password: str) -> User:
        """Set (or replace) a user's password for the studio's login form.

        Raises:
            BadInput: shorter than :data:`MIN_PASSWORD` characters, longer than 1,024, or the user's own name.
            NotFound: no such user.
        """
        if len(password) < MIN_PASSWORD:
            raise BadInput(f"A password needs at least {MIN_PASSWORD} characters (a phrase of a few words is best).")
        if len(password) > 1024:
            raise BadInput("A password is at most 1,024 characters.")
        if password.strip().lower() == name.lower():
            raise BadInput("A password may not be the user's name.")
        hashed = password_hash(password)
        with self._ws.store.write() as session:
            row = self._user_row(session, name)
            row.password_hash = hashed
            row.password_set_at = utcnow()
            session.flush()
            return _user(row)

    def clear_password(self, name: str) -> User:
        """Remove a user's password: they log in to the studio with a token only."""
        with self._ws.store.write() as session:
            row = self._user_row(session, name)
            row.password_hash = None
            row.password_set_at = None
            session.flush()
            return _user(row)

    def login(self, name: str, password: str, *, address: str = "unknown") -> IssuedToken:
        """Check a user's password and issue a studio session token (valid :data:`SESSION_HOURS` hours).

        Raises:
            Unauthorized: unknown user, no password set, wrong password, disabled user, or too many failures
                from this address (the message never says which of the first three it was).
        """
        key = (name[:200], address)
        now = time.monotonic()
        with self._cache_lock:
            recent = [t for t in self._failures.get(key, []) if now - t < LOCKOUT_SECONDS]
            self._failures[key] = recent
        if len(recent) >= MAX_FAILURES:
            wait = int(LOCKOUT_SECONDS - (now - recent[0])) + 1
            raise Unauthorized(f"Too many failed log-ins for {name!r} from this address; try again in {wait} s.")
        with self._ws.store.read() as session:
            row = session.scalar(sa.select(UserRow).filter_by(name=name)) if len(name) <= 200 else None
            stored = row.password_hash if row is not None else None
            disabled = row is not None and row.disabled_at is not None
        ok = password_matches(password[:1024], stored or _dummy_hash()) and stored is not None
        if not ok:
            with self._cache_lock:
                if len(self._failures) > 10_000:
                    self._failures.clear()
                self._failures.setdefault(key, []).append(now)
            raise Unauthorized(
                "Wrong user name or password (or the user has no password: `conveyor users password NAME` sets one)."
            )
        if disabled:
            raise Unauthorized(f"User {name!r} is disabled; an admin can enable them with `conveyor users enable`.")
        with self._cache_lock:
            self._failures.pop(key, None)
        return self.create_token(name, name="studio session", expires_in=timedelta(hours=SESSION_HOURS))

    def end_session(self, secret: str) -> None:
        """Revoke the token of a studio session made by :meth:`login` (a pasted API token is left alone)."""
        if not _TOKEN_RE.fullmatch(secret):
            return
        with self._ws.store.write() as session:
            session.execute(
                sa.update(TokenRow)
                .where(TokenRow.hash == token_hash(secret), TokenRow.name == "studio session")
                .where(TokenRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        self._forget()

    # -- tokens --------------------------------------------------------------------------------------

    def create_token(self, user: str, *, name: str = "", expires_in: timedelta | None = DEFAULT_EXPIRY) -> IssuedToken:
        """Issue a token for ``user``; the returned ``secret`` is never shown again.

        Raises:
            NotFound: no such user.
            Conflict: the user is disabled.
        """
        if len(name) > 128:
            raise BadInput("A token's name is at most 128 characters.")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self._ws.store.write() as session:
            owner = self._user_row(session, user)
            if owner.disabled_at is not None:
                raise Conflict(f"User {user!r} is disabled; enable them first with `conveyor users enable {user}`.")
            row = TokenRow(
                user_id=owner.id,
                name=name,
                prefix=secret[:12],
                hash=token_hash(secret),
                expires_at=None if expires_in is None else now + expires_in,
                created_by=self._ws.actor,
            )
            session.add(row)
            session.flush()
            return IssuedToken(_token(row, owner.name, now), secret)

    def tokens(self, user: str | None = None) -> list[Token]:
        """Tokens, newest first (of one user, or of everyone)."""
        now = utcnow()
        with self._ws.store.read() as session:
            query = sa.select(TokenRow, UserRow.name).join(UserRow, UserRow.id == TokenRow.user_id)
            if user is not None:
                query = query.where(TokenRow.user_id == self._user_row(session, user).id)
            rows = session.execute(query.order_by(TokenRow.created_at.desc(), TokenRow.id.desc())).all()
            return [_token(row, owner, now) for row, owner in rows]

    def revoke(self, token_id: str, *, user: str | None = None) -> Token:
        """Revoke a token by its id (or its printed prefix); with ``user``, only that user's.

        Raises:
            NotFound: no such token (of that user).
        """
        with self._ws.store.write() as session:
            query = sa.select(TokenRow, UserRow.name).join(UserRow, UserRow.id == TokenRow.user_id)
            query = query.where(sa.or_(TokenRow.id == token_id, TokenRow.prefix == token_id))
            if user is not None:
                query = query.where(UserRow.name == user)
            found = session.execute(query).all()
            if len(found) != 1:
                raise NotFound(
                    f"No token {token_id!r}{' of ' + repr(user) if user else ''}; `conveyor tokens list` shows "
                    "their ids."
                )
            row, owner = found[0]
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            session.flush()
            token = _token(row, owner, utcnow())
        self._forget()
        return token

    def authenticate(self, secret: str) -> Caller:
        """The user a token belongs to.

        Raises:
            Unauthorized: the token is malformed, unknown, expired or revoked, or its user is disabled.
        """
        if not _TOKEN_RE.fullmatch(secret):
            raise Unauthorized(
                "Malformed token: expected 'cvy_' and 43 characters. Send 'Authorization: Bearer <token>' with a "
                "token from `conveyor tokens create`."
            )
        digest = token_hash(secret)
        now_mono = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(digest)
        if cached is None or now_mono - cached[0] > CACHE_SECONDS:
            cached = (now_mono, *self._lookup(digest))
            with self._cache_lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = cached
        _, caller, expires_at = cached
        if caller is None:
            raise Unauthorized(
                "Unknown, revoked or disabled token, or its user is disabled. Create a new one with "
                "`conveyor tokens create`."
            )
        now = utcnow()
        if expires_at is not None and expires_at <= now:
            raise Unauthorized(
                f"The token expired at {expires_at.isoformat(timespec='seconds')}; create a new one with "
                "`conveyor tokens create`."
            )
        self._touch(caller.token_id, now)
        return caller

    # -- internals -----------------------------------------------------------------------------------

    def _lookup(self, digest: str) -> tuple[Caller | None, datetime | None]:
        with self._ws.store.read() as session:
            found = session.execute(
                sa.select(TokenRow, UserRow)
                .join(UserRow, UserRow.id == TokenRow.user_id)
                .where(TokenRow.hash == digest)
            ).first()
            if found is None:
                return None, None
            token, user = found
            if (
                not hmac.compare_digest(token.hash, digest)
                or token.revoked_at is not None
                or user.disabled_at is not None
            ):
                return None, None
            return Caller(user.id, user.name, user.role, token.id), token.expires_at

    def _touch(self, token_id: str, now: datetime) -> None:
        last = self._last_used.get(token_id)
        if last is not None and now - last < _LAST_USED_EVERY:
            return
        if len(self._last_used) > 10_000:
            self._last_used.clear()
        self._last_used[token_id] = now
        with self._ws.store.write(audited=False) as session:
            session.execute(sa.update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=now))

    def _forget(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def _user_row(self, session: sa.orm.Session, name: str) -> UserRow:
        row = session.scalar(sa.select(UserRow).filter_by(name=name))
        if row is None:
            names = list(session.scalars(sa.select(UserRow.name)))
            raise NotFound(f"No user {name!r}.{did_you_mean(name, names)} `conveyor users list` shows them.")
        return row


def _os_user_name() -> str:
    """The OS user as a valid user name."""
    from conveyor.governance._context import os_user

    return re.sub(r"[^A-Za-z0-9._-]", "-", os_user())[:64] or "admin"


def _user(row: UserRow) -> User:
    return User(
        row.id,
        row.name,
        row.role,
        row.disabled_at is not None,
        row.created_at,
        row.created_by,
        row.password_hash is not None,
    )


def _token(row: TokenRow, owner: str, now: datetime) -> Token:
    if row.revoked_at is not None:
        status = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return Token(
        row.id, owner, row.name, row.prefix, status, row.created_at, row.expires_at, row.revoked_at, row.last_used_at
    )
