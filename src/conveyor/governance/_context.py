"""Who is acting: the principal a change is recorded as, carried in a context variable.

Faces set it: the REST API from the request's token (``api:<client address>``), the CLI from the OS user
and the command (``cli``); without a face, the workspace's OS user acting through the SDK (``sdk``). A
context variable (not an attribute of the shared workspace) keeps concurrent requests apart; Starlette
copies the context into the thread that runs a route.
"""

from __future__ import annotations

import contextlib
import getpass
import socket
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace

__all__ = ["Principal", "acting_as", "current_principal", "local_principal"]


@dataclass(frozen=True)
class Principal:
    """Who acts, with which role, from where, doing what.

    Attributes:
        name: the user's name (an OS user for local use).
        role: ``admin``, ``data-scientist``, ``operator`` or ``reader``.
        source: where the action comes from: ``cli``, ``sdk`` or ``api:<address>``.
        action: what is being done, e.g. ``conveyor endpoints deploy`` or ``POST /api/v1/endpoints``.
        user_id: the user's id when the principal is a registered user (None for an OS user).
    """

    name: str
    role: str
    source: str
    action: str = ""
    user_id: str | None = None

    def doing(self, action: str) -> Principal:
        return replace(self, action=action)


_current: ContextVar[Principal | None] = ContextVar("conveyor_principal", default=None)


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def local_principal(source: str = "sdk", action: str = "") -> Principal:
    """The person on this machine: whoever can open the workspace's files can do anything in it, so the
    local user acts as an admin, recorded under their OS user name and host."""
    return Principal(name=os_user(), role="admin", source=f"{source}@{socket.gethostname()}", action=action)


def current_principal() -> Principal | None:
    """The principal set for this context, if a face set one."""
    return _current.get()


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Record everything done inside the block as ``principal``."""
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)


def set_principal(principal: Principal) -> None:
    """Set the principal for the rest of this context (a request, a CLI invocation)."""
    _current.set(principal)
