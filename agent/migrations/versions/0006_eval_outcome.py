"""Eval outcomes: the correct outcome of a run as a person recorded it (`caseplan eval label`),
which `caseplan eval harvest` turns into eval cases.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_outcome",
        sa.Column("run_id", sa.String(), sa.ForeignKey("run.id"), primary_key=True),
        sa.Column("template", sa.String(), nullable=False),
        sa.Column("escalation_reason", sa.String(), nullable=True),
        sa.Column("slots", sa.JSON(), nullable=False),
        sa.Column("forbidden_tools", sa.JSON(), nullable=False),
        sa.Column("note", sa.String(), nullable=True),
        sa.Column("recorded_by", sa.String(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_eval_outcome_recorded_at", "eval_outcome", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_eval_outcome_recorded_at", table_name="eval_outcome")
    op.drop_table("eval_outcome")
