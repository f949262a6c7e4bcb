"""Baseline: the record as caseplan 0.1 created it (runs, events, plans, side effects, escalations).

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "run",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("status", sa.String(), nullable=False, index=True),
        sa.Column("ticket", sa.JSON(), nullable=False),
        sa.Column("ticket_id", sa.String(), nullable=True, index=True),
        sa.Column("template", sa.String(), nullable=True, index=True),
        sa.Column("plan_hash", sa.String(), nullable=True),
        sa.Column("route", sa.JSON(), nullable=True),
        sa.Column("reply", sa.String(), nullable=True),
        sa.Column("escalation_reason", sa.String(), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("versions", sa.JSON(), nullable=True),
        sa.Column("root_hash", sa.String(), nullable=True),
        sa.Column("created_at", STAMP, nullable=False, index=True),
        sa.Column("updated_at", STAMP, nullable=False),
    )
    op.create_table(
        "runevent",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(), sa.ForeignKey("run.id"), nullable=False, index=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("prev_hash", sa.String(), nullable=False),
        sa.Column("hash", sa.String(), nullable=False),
        sa.UniqueConstraint("run_id", "seq"),
    )
    op.create_table(
        "storedplan",
        sa.Column("hash", sa.String(), primary_key=True),
        sa.Column("template", sa.String(), nullable=False, index=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
    )
    op.create_table(
        "sideeffect",
        sa.Column("idempotency_key", sa.String(), primary_key=True),
        sa.Column("run_id", sa.String(), nullable=False, index=True),
        sa.Column("step_id", sa.String(), nullable=False),
        sa.Column("tool", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
    )
    op.create_table(
        "escalation",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("run_id", sa.String(), nullable=False, index=True),
        sa.Column("ticket_id", sa.String(), nullable=True, index=True),
        sa.Column("reason", sa.String(), nullable=False, index=True),
        sa.Column("priority", sa.String(), nullable=False),
        sa.Column("queue", sa.String(), nullable=False, index=True),
        sa.Column("summary", sa.String(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(), nullable=False, index=True),
        sa.Column("claimed_by", sa.String(), nullable=True),
        sa.Column("resolution", sa.String(), nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("updated_at", STAMP, nullable=False),
    )


def downgrade() -> None:
    for table in ("escalation", "sideeffect", "storedplan", "runevent", "run"):
        op.drop_table(table)
