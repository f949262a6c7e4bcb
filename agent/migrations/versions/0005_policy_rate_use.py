"""Rate-limit counters of the policy engine: one row per counted use of a limited tool.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_rate_use",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rule_id", sa.String(), nullable=False, index=True),
        sa.Column("scope_hash", sa.String(), nullable=False, index=True),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.UniqueConstraint("rule_id", "idempotency_key"),
    )


def downgrade() -> None:
    op.drop_table("policy_rate_use")
