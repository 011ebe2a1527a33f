"""Small transaction helpers shared by the services: get-or-create by name and version allocation.

Both are safe under concurrent writers: on SQLite the write transaction already holds the database's
write lock (``BEGIN IMMEDIATE``); on PostgreSQL the parent row is locked with ``SELECT ... FOR UPDATE``
so two writers never allocate the same version number.
"""

from __future__ import annotations

from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from conveyor.store._schema import Base, new_id, utcnow

__all__ = ["lock_or_create", "next_version"]

RowT = TypeVar("RowT", bound=Base)


def lock_or_create(session: Session, row_type: type[RowT], *, name: str, created_by: str, **values: Any) -> RowT:
    """The row of ``row_type`` named ``name``, created if missing, locked for the rest of the transaction."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert_fn = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert_fn(row_type)
        .values(id=new_id(), name=name, created_at=utcnow(), created_by=created_by, **values)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    session.execute(statement)
    name_column = sa.inspect(row_type).columns["name"]
    return session.scalars(sa.select(row_type).where(name_column == name).with_for_update()).one()


def next_version(
    session: Session, version_column: InstrumentedAttribute[int], parent_column: Any, parent_id: str
) -> int:
    """One more than the highest version under ``parent_id`` (1 for the first); call with the parent locked."""
    current = session.scalar(sa.select(sa.func.max(version_column)).where(parent_column == parent_id))
    return 1 if current is None else int(current) + 1
