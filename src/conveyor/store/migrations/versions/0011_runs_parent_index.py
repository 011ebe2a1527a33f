"""runs parent index

Child runs are looked up by their parent (an AutoML run's trials, ``runs list``'s children count, the studio's
run page): an index on ``runs.parent_run_id`` keeps that a lookup instead of a scan of every run.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 21:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_parent_run_id"), ["parent_run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_parent_run_id"))
