"""Audit record: record format and hash chain per run, versions per event, approvals, PII vault.

Runs that already exist keep record format 1 (their hashes were computed the 0.1 way) and a
plain sha256 chain; `audit verify` checks them by the rules they were written under.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("run") as batch:
        batch.add_column(sa.Column("record_version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("chain", sa.String(), nullable=False, server_default="sha256"))
    with op.batch_alter_table("runevent") as batch:
        batch.add_column(sa.Column("versions", sa.JSON(), nullable=True))
    op.create_table(
        "approval",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("run_id", sa.String(), sa.ForeignKey("run.id"), nullable=False, index=True),
        sa.Column("plan_hash", sa.String(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(), nullable=False, index=True),
        sa.Column("requested_at", STAMP, nullable=False),
        sa.Column("decided_at", STAMP, nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("note", sa.String(), nullable=True),
    )
    op.create_table(
        "piivault",
        sa.Column("ref", sa.String(), primary_key=True),
        sa.Column("run_id", sa.String(), nullable=True, index=True),
        sa.Column("key_id", sa.String(), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("piivault")
    op.drop_table("approval")
    with op.batch_alter_table("runevent") as batch:
        batch.drop_column("versions")
    with op.batch_alter_table("run") as batch:
        batch.drop_column("chain")
        batch.drop_column("record_version")
