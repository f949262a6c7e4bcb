"""Sandbox identity provider: account lookup, requester verification, reset-link delivery."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlmodel import Session, select

from tools.base import ToolContext, ToolError, derived_id
from tools.contracts.identity import (
    RESETTABLE_STATUSES,
    AccountLookupInput,
    AccountLookupOutput,
    AccountLookupTool,
    PasswordResetInput,
    PasswordResetOutput,
    PasswordResetTool,
    VerifyIdentityInput,
    VerifyIdentityOutput,
    VerifyIdentityTool,
)
from tools.contracts.types import mask_email
from tools.sandbox.models import (
    SandboxOutboxEmail,
    SandboxResetRequest,
    SandboxUser,
    SandboxVerification,
    utcnow,
)
from tools.sandbox.store import SandboxStore

RESET_LINK_TTL = timedelta(hours=1)
RESET_URL = "https://sandbox.caseplan.local/reset?token="


class SandboxAccountLookup(AccountLookupTool):
    adapter = "sandbox"
    in_process = True

    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    def invoke(self, args: AccountLookupInput, ctx: ToolContext) -> AccountLookupOutput:
        with self.store.session() as session:
            if args.user_id is not None:
                user = session.get(SandboxUser, args.user_id)
            else:
                user = session.exec(select(SandboxUser).where(SandboxUser.email == args.email)).first()
        if user is None:
            raise ToolError("permanent", "no account matches", status_code=404)
        return AccountLookupOutput(
            user_id=user.user_id, email=user.email, display_name=user.display_name, status=user.status
        )


class SandboxVerifyIdentity(VerifyIdentityTool):
    adapter = "sandbox"
    in_process = True

    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    def invoke(self, args: VerifyIdentityInput, ctx: ToolContext) -> VerifyIdentityOutput:
        verification_id = derived_id("ver", ctx.idempotency_key)
        with self.store.session() as session:
            user = session.get(SandboxUser, args.user_id)
            if user is None:
                raise ToolError("permanent", f"account {args.user_id} not found", status_code=404)
            verified = user.email == args.requester_email and user.status in RESETTABLE_STATUSES
            if session.get(SandboxVerification, verification_id) is None:
                session.add(
                    SandboxVerification(
                        verification_id=verification_id,
                        user_id=user.user_id,
                        requester_email=args.requester_email,
                        verified=verified,
                    )
                )
                session.commit()
        if not verified:
            reason = "account is not active" if user.email == args.requester_email else "requester does not own the account"
            raise ToolError("denied", f"identity not verified: {reason}", status_code=403)
        return VerifyIdentityOutput(
            user_id=args.user_id, verified=True, verification_id=verification_id, method="requester_email_match"
        )


class SandboxPasswordReset(PasswordResetTool):
    adapter = "sandbox"
    in_process = True

    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    def invoke(self, args: PasswordResetInput, ctx: ToolContext) -> PasswordResetOutput:
        return self.store.once(ctx.idempotency_key, self.name, PasswordResetOutput, lambda s: self._reset(s, args, ctx))

    def _reset(self, session: Session, args: PasswordResetInput, ctx: ToolContext) -> PasswordResetOutput:
        verification = session.get(SandboxVerification, args.verification_id)
        if verification is None or not verification.verified or verification.user_id != args.user_id:
            raise ToolError("denied", "no successful identity verification for this account", status_code=403)
        user = session.get(SandboxUser, args.user_id)
        if user is None:
            raise ToolError("permanent", f"account {args.user_id} not found", status_code=404)
        if user.status not in RESETTABLE_STATUSES:
            raise ToolError("denied", f"account is {user.status}", status_code=403)
        token = secrets.token_urlsafe(24)
        request_id = derived_id("rst", ctx.idempotency_key)
        expires_at = utcnow() + RESET_LINK_TTL
        session.add(
            SandboxResetRequest(
                request_id=request_id,
                user_id=user.user_id,
                token_sha256=hashlib.sha256(token.encode()).hexdigest(),
                expires_at=expires_at,
                sessions_revoked=args.revoke_sessions,
            )
        )
        session.add(
            SandboxOutboxEmail(
                to=user.email,
                subject="Reset your password",
                body=f"Hello {user.display_name}, reset your password here (valid 1 hour): {RESET_URL}{token}",
            )
        )
        if args.revoke_sessions:
            user.active_sessions = 0
            session.add(user)
        return PasswordResetOutput(
            user_id=user.user_id,
            reset_link_sent=True,
            delivered_to=mask_email(user.email),
            expires_at=expires_at,
            sessions_revoked=args.revoke_sessions,
            request_id=request_id,
        )
