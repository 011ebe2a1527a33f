"""endpoints serving settings keys traffic mirror

Endpoints gain auth and keys, serving settings, a revision and their supervisor's runtime state;
deployments gain a mirrored-traffic share and batching settings. Endpoints made before this revision were
served without auth on loopback, so they keep ``auth = none``; new ones default to keys.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 14:01:04.609524
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mirror", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column(
                "settings",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="{}",
            )
        )

    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auth", sa.String(length=16), nullable=False, server_default="none"))
        batch_op.add_column(sa.Column("primary_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("secondary_key", sa.String(length=128), nullable=True))
        batch_op.add_column(
            sa.Column(
                "settings",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="{}",
            )
        )
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("status", sa.String(length=16), nullable=False, server_default="stopped"))
        batch_op.add_column(sa.Column("url", sa.String(length=512), nullable=True))
        batch_op.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
        batch_op.drop_column("pid")
        batch_op.drop_column("url")
        batch_op.drop_column("status")
        batch_op.drop_column("revision")
        batch_op.drop_column("settings")
        batch_op.drop_column("secondary_key")
        batch_op.drop_column("primary_key")
        batch_op.drop_column("auth")

    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_column("settings")
        batch_op.drop_column("mirror")
