"""The service: API keys, the work queue, idempotency records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_key",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False, index=True),
        sa.Column("secret_hash", sa.String(), nullable=False, index=True, unique=True),
        sa.Column("created_at", STAMP, nullable=False),
        sa.Column("revoked_at", STAMP, nullable=True),
    )
    op.create_table(
        "work_item",
        sa.Column("run_id", sa.String(), primary_key=True),
        sa.Column("state", sa.String(), nullable=False, index=True),
        sa.Column("answer", sa.JSON(), nullable=True),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_until", STAMP, nullable=True, index=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("enqueued_at", STAMP, nullable=False, index=True),
        sa.Column("updated_at", STAMP, nullable=False),
    )
    op.create_table(
        "idempotency_record",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("body_hash", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("idempotency_record")
    op.drop_table("work_item")
    op.drop_table("api_key")
