"""run processes and heartbeats

A tracked run records the process that records it (``runs.process_host``, ``process_pid``, ``process_key``: the
machine namespace and the process's start time, so a reused PID is told apart) and that process's heartbeat;
a pipeline run adds its runner's key and heartbeat to the host and PID it had. Readers mark a ``running`` run
whose process is gone as ``crashed``; the status indexes keep finding the running ones cheap.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 20:52:35.699781
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runner_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_pipeline_runs_status"), ["status"], unique=False)

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("process_host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("process_pid", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("process_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_runs_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_status"))
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("process_key")
        batch_op.drop_column("process_pid")
        batch_op.drop_column("process_host")

    with op.batch_alter_table("pipeline_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pipeline_runs_status"))
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("runner_key")
