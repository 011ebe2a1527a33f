"""The audit log: every change to the workspace, from any face, appended in the same transaction as the
change, as a hash chain.

Entry ``n`` stores ``hash = SHA-256(hash(n-1) || canonical(n))`` where ``canonical`` is the JSON array of its
fields (sequence number, time, actor, role, source, action, targets). Editing an entry changes its hash;
deleting one leaves a gap in the sequence; inserting or replacing one breaks the link of the next.
:meth:`AuditLog.verify` names the first such entry. The chain has no secret key, so it shows that history
was changed, not who may append: keep a copy of the head hash (``conveyor audit verify --json``) somewhere
else to notice a rewritten tail.

The store calls :func:`audit_hook`'s function at the end of each write unit with the tables and rows it
changed (``MetadataStore.on_write``); the principal comes from the context a face set (``_context``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.errors import BadInput
from conveyor.governance._context import Principal, current_principal
from conveyor.store._schema import AuditEventRow, utcnow

if TYPE_CHECKING:
    from conveyor.store import MetadataStore
    from conveyor.store._metadata import Change

__all__ = ["GENESIS", "AuditEvent", "AuditLog", "Verification", "audit_hook"]

GENESIS = "0" * 64
_ADVISORY_KEY = 0x41756474  # "Audt"
_MAX_TARGETS = 100
_TABLE: sa.Table = AuditEventRow.__table__  # type: ignore[assignment]
_LOCK = sa.text("SELECT pg_advisory_xact_lock(:key)")
_LAST = sa.select(_TABLE.c.seq, _TABLE.c.hash).order_by(_TABLE.c.seq.desc()).limit(1)
_INSERT = _TABLE.insert()


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: datetime
    actor: str
    role: str
    source: str
    action: str
    targets: list[Any]
    hash: str


@dataclass(frozen=True)
class Verification:
    """What ``verify`` found: ``ok`` with the head, or the first broken entry and why."""

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_bad: int | None
    problem: str | None
    seconds: float


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    prev_hash: str, seq: int, at: datetime, actor: str, role: str, source: str, action: str, targets: Any
) -> str:
    """The chain hash of one entry."""
    body = orjson.dumps([seq, _stamp(at), actor, role, source, action, targets])
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def _targets(changes: list[Change]) -> list[list[str]]:
    seen: dict[tuple[str, str, str], None] = {}
    for change in changes:
        seen.setdefault(change, None)
    unique = [list(change) for change in seen]
    if len(unique) > _MAX_TARGETS:
        rest = len(unique) - _MAX_TARGETS
        unique = [*unique[:_MAX_TARGETS], ["…", "more", str(rest)]]
    return unique


def audit_hook(dialect: str, default: Callable[[], Principal]) -> Callable[[Session, list[Change]], None]:
    """The function the store calls at the end of a write unit: append one entry for the unit's changes."""

    def append(session: Session, changes: list[Change]) -> None:
        principal = current_principal() or default()
        targets = _targets(changes)
        action = principal.action or ", ".join(sorted({f"{op} {table}" for table, op, _ in changes}))
        # Core on the session's connection: the ORM's bulk-insert path costs more than the append itself.
        conn = session.connection()
        if dialect == "postgresql":
            # One appender at a time, so two transactions never both link to the same previous entry.
            conn.execute(_LOCK, {"key": _ADVISORY_KEY})
        last = conn.execute(_LAST).first()
        seq, prev = (1, GENESIS) if last is None else (last[0] + 1, last[1])
        at = utcnow()
        digest = entry_hash(prev, seq, at, principal.name, principal.role, principal.source, action[:512], targets)
        conn.execute(
            _INSERT,
            {
                "seq": seq,
                "at": at,
                "actor": principal.name[:128],
                "role": principal.role,
                "source": principal.source[:255],
                "action": action[:512],
                "targets": targets,
                "prev_hash": prev,
                "hash": digest,
            },
        )

    return append


class AuditLog:
    """``ws.audit``: read and verify the audit log."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def list(
        self,
        *,
        limit: int = 50,
        actor: str | None = None,
        action: str | None = None,
        table: str | None = None,
        before: int | None = None,
    ) -> list[AuditEvent]:
        """Entries newest first; ``action`` matches a part of the action, ``table`` a changed table,
        ``before`` pages (entries with a smaller sequence number).

        Raises:
            BadInput: the limit is out of range.
        """
        if not 1 <= limit <= 10_000:
            raise BadInput(f"limit must be between 1 and 10000, not {limit}.")
        query = sa.select(AuditEventRow)
        if actor is not None:
            query = query.where(AuditEventRow.actor == actor)
        if action is not None:
            query = query.where(AuditEventRow.action.contains(action, autoescape=True))
        if before is not None:
            query = query.where(AuditEventRow.seq < before)
        events: list[AuditEvent] = []
        with self._store.read() as session:
            # A changed table is looked for in the targets in Python: JSON containment differs per backend.
            for row in session.scalars(query.order_by(AuditEventRow.seq.desc()).execution_options(yield_per=500)):
                if table is not None and not any(t and t[0] == table for t in row.targets):
                    continue
                events.append(
                    AuditEvent(row.seq, row.at, row.actor, row.role, row.source, row.action, row.targets, row.hash)
                )
                if len(events) >= limit:
                    break
        return events

    def verify(self) -> Verification:
        """Walk the whole chain and report the first entry that was edited, inserted or deleted."""
        started = time.perf_counter()
        columns = (
            AuditEventRow.seq,
            AuditEventRow.at,
            AuditEventRow.actor,
            AuditEventRow.role,
            AuditEventRow.source,
            AuditEventRow.action,
            AuditEventRow.targets,
            AuditEventRow.prev_hash,
            AuditEventRow.hash,
        )
        expected_seq, prev, count = 1, GENESIS, 0
        sha256, dumps, stamp = hashlib.sha256, orjson.dumps, _stamp
        problem: str | None = None
        bad: int | None = None
        with self._store.read() as session:
            result = session.execute(
                sa.select(*columns).order_by(AuditEventRow.seq).execution_options(yield_per=20_000)
            )
            for seq, at, actor, role, source, action, targets, prev_hash, digest in result:
                if seq != expected_seq:
                    bad = seq
                    if seq > expected_seq:
                        span = (
                            f"entry {expected_seq} is"
                            if seq == expected_seq + 1
                            else f"entries {expected_seq}–{seq - 1} are"
                        )
                        problem = f"{span} missing: deleted (the log jumps from {expected_seq - 1} to {seq})"
                    else:
                        problem = f"entry {seq} is out of order (after {expected_seq - 1}): inserted"
                    break
                if prev_hash != prev:
                    bad, problem = (
                        seq,
                        (
                            f"entry {seq} does not link to entry {seq - 1}: entry {seq - 1} was rewritten, or an entry "
                            "was inserted or replaced there"
                        ),
                    )
                    break
                body = dumps([seq, stamp(at), actor, role, source, action, targets])
                if sha256(prev.encode("ascii") + body).hexdigest() != digest:
                    bad, problem = seq, f"entry {seq} was edited: its content no longer matches its hash"
                    break
                prev, expected_seq, count = digest, seq + 1, count + 1
        return Verification(
            ok=problem is None,
            entries=count,
            head_seq=expected_seq - 1,
            head_hash=prev,
            first_bad=bad,
            problem=problem,
            seconds=round(time.perf_counter() - started, 3),
        )
