"""Identity verifications recorded in caseplan's own database, for identity providers that
keep no such record (Okta answers "who is this user", not "did caseplan check the requester").

`verify_identity` writes one row per verification id; `password_reset` refuses unless the row
says the check succeeded, for the same account, earlier in the same run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel

from tools.base import ToolContext, ToolError, derived_id


def _utcnow() -> datetime:
    return datetime.now(UTC)


class IdentityVerification(SQLModel, table=True):
    __tablename__ = "identity_verification"
    verification_id: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    step_id: str
    user_id: str = Field(index=True)
    provider: str
    verified: bool
    reason: str | None = None
    created_at: datetime = Field(default_factory=_utcnow)


class VerificationLedger:
    """Write and check verifications; the id is derived from the step's idempotency key."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine, tables=[IdentityVerification.__table__])

    def record(self, ctx: ToolContext, user_id: str, provider: str, *, verified: bool, reason: str | None = None) -> str:
        """Store the outcome (a repeated step overwrites it with the newer answer); returns its id."""
        verification_id = derived_id("ver", ctx.idempotency_key)
        row = IdentityVerification(
            verification_id=verification_id,
            run_id=ctx.run_id,
            step_id=ctx.step_id,
            user_id=user_id,
            provider=provider,
            verified=verified,
            reason=reason,
        )
        with Session(self.engine) as session:
            session.merge(row)
            session.commit()
        return verification_id

    def require(self, verification_id: str, user_id: str, ctx: ToolContext) -> IdentityVerification:
        """The successful verification of `user_id` from an earlier step of this run, or a denial."""
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(IdentityVerification, verification_id)
        if row is None or not row.verified or row.user_id != user_id:
            raise ToolError("denied", "no successful identity verification for this account", status_code=403)
        if row.run_id != ctx.run_id or row.step_id == ctx.step_id:
            raise ToolError("denied", "the identity verification belongs to another run", status_code=403)
        return row
