"""Sandbox tables. They model the *outside* world (helpdesk, identity provider), so they live
in their own metadata and database file, apart from caseplan's own record."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, MetaData
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class SandboxTable(SQLModel):
    metadata = MetaData()


class SandboxUser(SandboxTable, table=True):
    __tablename__ = "sandbox_user"
    user_id: str = Field(primary_key=True)
    email: str = Field(unique=True, index=True)
    display_name: str
    status: str = "active"
    active_sessions: int = 1


class SandboxTicket(SandboxTable, table=True):
    __tablename__ = "sandbox_ticket"
    ticket_id: str = Field(primary_key=True)
    subject: str
    description: str
    status: str = "new"
    requester_email: str | None = None
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class SandboxComment(SandboxTable, table=True):
    __tablename__ = "sandbox_comment"
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: str = Field(foreign_key="sandbox_ticket.ticket_id", index=True)
    public: bool
    body: str
    created_at: datetime = Field(default_factory=utcnow)


class SandboxVerification(SandboxTable, table=True):
    __tablename__ = "sandbox_verification"
    verification_id: str = Field(primary_key=True)
    user_id: str = Field(index=True)
    requester_email: str
    verified: bool
    created_at: datetime = Field(default_factory=utcnow)


class SandboxResetRequest(SandboxTable, table=True):
    __tablename__ = "sandbox_reset_request"
    request_id: str = Field(primary_key=True)
    user_id: str = Field(index=True)
    token_sha256: str
    expires_at: datetime
    sessions_revoked: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class SandboxOutboxEmail(SandboxTable, table=True):
    """Mail the identity provider 'sent'; the demo prints it so people can see the reset link."""

    __tablename__ = "sandbox_outbox_email"
    id: int | None = Field(default=None, primary_key=True)
    to: str = Field(index=True)
    subject: str
    body: str
    created_at: datetime = Field(default_factory=utcnow)


class SandboxIdempotency(SandboxTable, table=True):
    """Responses by idempotency key, as a real API keeps them: a repeated key repeats the answer."""

    __tablename__ = "sandbox_idempotency"
    key: str = Field(primary_key=True)
    tool: str
    response: dict = Field(sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
