"""The desk's trail: every claim, release and resolution of an escalation, with the reply a
person sent to the customer.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_event",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("escalation_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_desk_event_escalation_id", "desk_event", ["escalation_id"])
    op.create_index("ix_desk_event_run_id", "desk_event", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_desk_event_run_id", table_name="desk_event")
    op.drop_index("ix_desk_event_escalation_id", table_name="desk_event")
    op.drop_table("desk_event")
