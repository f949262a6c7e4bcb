"""Console sessions: the console's cookie holds a session token, not the API key. And an index
on the run an idempotency record created: a platform key reads only its own tickets' runs.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_session",
        sa.Column("token_hash", sa.String(), primary_key=True),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_session_key_id", "console_session", ["key_id"])
    op.create_index("ix_console_session_expires_at", "console_session", ["expires_at"])
    op.create_index("ix_idempotency_record_run_id", "idempotency_record", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_record_run_id", table_name="idempotency_record")
    op.drop_index("ix_console_session_expires_at", table_name="console_session")
    op.drop_index("ix_console_session_key_id", table_name="console_session")
    op.drop_table("console_session")
