"""The audit log: every change to the workspace, from any face, appended in the same transaction as the
change, as a hash chain.

Entry ``n`` stores ``hash = SHA-256(hash(n-1) US seq US at US actor US role US source US action US targets)``,
the stored text of its fields joined by the unit separator (U+001F, which no field may hold: it is replaced
when an entry is written, and the targets are JSON, which escapes it), so verifying re-hashes the raw rows
without parsing or re-encoding anything. Editing an entry changes its hash;
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
from datetime import UTC, datetime
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
_US = "\x1f"
_VERIFY_SQL = "SELECT seq, prev_hash, hash, at, actor, role, source, action, targets FROM audit_events ORDER BY seq"


@dataclass(frozen=True)
class AuditEvent:
    """One audit entry as it is read: ``targets`` lists ``[table, operation, id]`` of the rows changed."""

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


def stamp(at: datetime) -> str:
    """An entry's time as stored and hashed: ISO 8601 UTC with microseconds and a ``Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(prev_hash: str, seq: int, at: str, actor: str, role: str, source: str, action: str, targets: str) -> str:
    """The chain hash of one entry, from the values exactly as stored (``at`` and ``targets`` are text)."""
    payload = _US.join((prev_hash, str(seq), at, actor, role, source, action, targets))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _field(text: str, limit: int) -> str:
    return text.replace(_US, "\ufffd")[:limit]


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
        at, targets_text = stamp(utcnow()), orjson.dumps(targets).decode("utf-8")
        actor, role = _field(principal.name, 128), _field(principal.role, 32)
        source, action = _field(principal.source, 255), _field(action, 512)
        digest = entry_hash(prev, seq, at, actor, role, source, action, targets_text)
        values = {"seq": seq, "at": at, "actor": actor, "role": role, "source": source, "action": action}
        conn.execute(_INSERT, {**values, "targets": targets_text, "prev_hash": prev, "hash": digest})

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
        if table is not None:
            query = query.where(
                AuditEventRow.targets.contains(orjson.dumps([table]).decode()[:-1] + ",", autoescape=True)
            )
        if before is not None:
            query = query.where(AuditEventRow.seq < before)
        with self._store.read() as session:
            rows = session.scalars(query.order_by(AuditEventRow.seq.desc()).limit(limit)).all()
            return [
                AuditEvent(
                    row.seq,
                    datetime.fromisoformat(row.at),
                    row.actor,
                    row.role,
                    row.source,
                    row.action,
                    orjson.loads(row.targets),
                    row.hash,
                )
                for row in rows
            ]

    def verify(self) -> Verification:
        """Walk the whole chain and report the first entry that was edited, inserted or deleted."""
        started = time.perf_counter()
        expected_seq, prev, count = 1, GENESIS, 0
        sha256, join = hashlib.sha256, _US.join
        problem: str | None = None
        bad: int | None = None
        # Raw rows straight from the driver: the stored text is what was hashed, so nothing needs parsing.
        with self._store.read() as session:
            cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(_VERIFY_SQL)
            chunks = iter(lambda: cursor.fetchmany(20_000), [])
            for row in (row for chunk in chunks for row in chunk):
                seq, prev_hash, digest = row[0], row[1], row[2]
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
                    bad = seq
                    problem = (
                        f"entry {seq} does not link to entry {seq - 1}: entry {seq - 1} was rewritten, or an entry "
                        "was inserted or replaced there"
                    )
                    break
                payload = join((prev_hash, str(seq), *row[3:]))
                if sha256(payload.encode("utf-8")).hexdigest() != digest:
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
