"""Named locks shared by every process of a workspace: one holder at a time, across processes and threads.

On SQLite (one machine) a named lock is a file lock in the workspace's ``run/locks/`` folder; on PostgreSQL
(processes on several machines) a session-level advisory lock, held on a connection of its own so that no
transaction of the caller's can release it, keyed by a 64-bit hash of the name. Either way the lock is
re-entrant within a thread (a deploy that creates its endpoint takes the endpoint's lock twice) and released
if its holder dies (the file is closed, the connection drops).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conveyor.errors import Conflict

__all__ = ["advisory_key", "named_lock"]

_POLL_S = 0.05
_held = threading.local()


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory-lock key of a lock name: the first 8 bytes of its SHA-256, as a signed bigint."""
    return int.from_bytes(hashlib.sha256(f"conveyor:{name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def named_lock(engine: sa.Engine, run_dir: Path, name: str, *, timeout: float, busy: str) -> Iterator[None]:
    """Hold the workspace-wide lock ``name`` for the block.

    Args:
        engine: the metadata database's engine (its dialect picks the kind of lock).
        run_dir: the workspace's ``run/`` folder (file locks live in ``run/locks/``).
        name: what is locked, e.g. ``endpoint:churn``; any text (files are named by its hash).
        timeout: seconds to wait for another holder.
        busy: the message of the ``Conflict`` raised when the wait times out.

    Raises:
        Conflict: another process or thread held the lock for ``timeout`` seconds.
    """
    held: dict[tuple[str, str], int] = _held.__dict__.setdefault("counts", {})
    token = (str(engine.url), name)
    if held.get(token):
        held[token] += 1
        try:
            yield
        finally:
            held[token] -= 1
        return
    acquire = _advisory if engine.dialect.name == "postgresql" else _file
    with acquire(engine, run_dir, name, timeout, busy):
        held[token] = 1
        try:
            yield
        finally:
            del held[token]


@contextlib.contextmanager
def _file(engine: sa.Engine, run_dir: Path, name: str, timeout: float, busy: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    folder = run_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    # A name may hold anything ("../", unicode): the file is named by its hash.
    path = folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock"
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=timeout, poll_interval=_POLL_S)
    except Timeout as exc:
        raise Conflict(busy, lock=name) from exc
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _advisory(engine: sa.Engine, run_dir: Path, name: str, timeout: float, busy: str) -> Iterator[None]:
    key = advisory_key(name)
    conn: Any = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + timeout
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
            if time.monotonic() >= deadline:
                raise Conflict(busy, lock=name)
            time.sleep(_POLL_S)
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except BaseException:
        # Whatever went wrong, a connection that may still hold the lock must not go back to the pool.
        conn.invalidate()
        raise
    finally:
        conn.close()
