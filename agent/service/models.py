"""The service's own tables: API keys, the work queue, idempotency records."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Column
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

ROLES = ("platform", "agent", "auditor", "admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


class ApiKey(SQLModel, table=True):
    """A caller's key: only its SHA-256 is stored (keys are 32 random bytes, so a slow hash adds nothing)."""

    __tablename__ = "api_key"
    id: str = Field(primary_key=True)
    name: str
    role: str = Field(index=True)
    secret_hash: str = Field(index=True, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class WorkItem(SQLModel, table=True):
    """One run waiting for, or held by, a worker. A lease that is not renewed expires, and any
    worker may then take the run over and resume it from its checkpoint."""

    __tablename__ = "work_item"
    run_id: str = Field(primary_key=True)
    state: str = Field(default="queued", index=True)  # queued | leased | done
    answer: dict | None = Field(default=None, sa_column=Column(JSON))  # an approval answer to resume with
    lease_owner: str | None = None
    lease_until: datetime | None = Field(default=None, index=True)
    attempts: int = 0
    enqueued_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class IdempotencyRecord(SQLModel, table=True):
    """What one key (per API key) created: the same body gets the same run, a different body 409."""

    __tablename__ = "idempotency_record"
    key: str = Field(primary_key=True)  # "<api key id>:<Idempotency-Key>"
    body_hash: str
    run_id: str = Field(index=True)  # whose run it is (`submitted_by`), asked on every platform read
    created_at: datetime = Field(default_factory=utcnow)


class ConsoleSession(SQLModel, table=True):
    """A console login: the cookie holds a random token, never the API key, so logging out ends
    it (the row is deleted) and a stolen cookie stops working at `expires_at` or on revocation."""

    __tablename__ = "console_session"
    token_hash: str = Field(primary_key=True)
    key_id: str = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


def submitted_by(engine: Engine, run_id: str) -> set[str]:
    """The ids of the API keys that posted the ticket of `run_id` (none for a run the CLI made)."""
    with Session(engine) as session:
        rows = session.exec(select(IdempotencyRecord.key).where(IdempotencyRecord.run_id == run_id)).all()
    return {key.split(":", 1)[0] for key in rows}
