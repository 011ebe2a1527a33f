"""Heartbeats of the processes that own running things (tracked runs, pipeline runs), on one clock.

A heartbeat matters only for an owner on another machine, whose PID cannot be checked (``conveyor._owner``).
Its age is measured on the database's clock where there is one to share: on PostgreSQL the heartbeat is
``now()`` of the server and so is the time it is compared with, so neither skew between machines nor a clock
that jumps on the owner's machine ages it. SQLite has no server: both times are this machine's UTC clock
(every process using a SQLite file shares the machine's clock anyway).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor._owner import judge
from conveyor.store._schema import utcnow

__all__ = ["HEARTBEAT_SECONDS", "STALE_SECONDS", "Liveness", "beat_value", "database_now"]

#: How often an owner writes its heartbeat.
HEARTBEAT_SECONDS = 10.0
#: A heartbeat older than this (six missed beats) means its owner on another machine is gone.
STALE_SECONDS = 60.0


def beat_value(session: Session) -> Any:
    """What to store as a heartbeat now: the server's ``now()`` on PostgreSQL, this machine's UTC time on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.now()
    return utcnow()


def database_now(session: Session) -> datetime:
    """The time a heartbeat's age is measured against (the same clock :func:`beat_value` writes)."""
    if session.get_bind().dialect.name == "postgresql":
        value = session.scalar(sa.select(sa.func.now()))
        if isinstance(value, datetime):
            return value
    return utcnow()


class Liveness:
    """Decides, for the rows of one read, whether each owner is gone; asks the database for its time at most
    once, and only if an owner runs elsewhere."""

    def __init__(self, session: Session, stale_seconds: float = STALE_SECONDS) -> None:
        self._session = session
        self._stale = timedelta(seconds=stale_seconds)
        self._now: datetime | None = None
        self._seen: dict[tuple[str | None, int | None, str | None], tuple[bool, str]] = {}

    def gone(
        self, host: str | None, pid: int | None, key: str | None, heartbeat_at: datetime | None
    ) -> tuple[bool, str]:
        """``(gone, why)`` for the owner ``host``/``pid``/``key`` whose last heartbeat is ``heartbeat_at``.

        An owner recorded without a process (rows written before Conveyor recorded them) is never gone.
        """
        if pid is None or not host:
            return False, ""
        known = self._seen.get((host, pid, key))
        if known is None:
            verdict = judge(host, pid, key)
            known = (verdict.gone, verdict.why) if verdict.local else (False, "?")
            self._seen[(host, pid, key)] = known
        if known[1] != "?":
            return known
        if heartbeat_at is None:
            return False, ""
        if self._now is None:
            self._now = database_now(self._session)
        age = self._now - heartbeat_at
        if age > self._stale:  # a heartbeat from the future (a clock set back) is young, never stale
            return True, f"it sent no heartbeat for {age.total_seconds():.0f} s (it runs on {host})"
        return False, ""
