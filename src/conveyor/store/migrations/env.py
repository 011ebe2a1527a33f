"""Alembic environment: migrations always run on a connection handed over by ``MetadataStore``."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from conveyor.store._schema import Base, PostgresJSONB, UTCDateTime

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Conveyor's migrations run through MetadataStore.open(); the alembic command line is not used.")


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    # Migrations must not import the live models: render our column types as plain SQLAlchemy ones.
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if kind == "type" and isinstance(obj, PostgresJSONB):
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return "postgresql.JSONB(astext_type=sa.Text())"
    return False


context.configure(
    connection=connection,
    render_item=_render_item,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
