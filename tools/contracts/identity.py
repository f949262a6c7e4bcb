"""Identity-provider contracts: find an account, verify the requester owns it, send a reset link.

`password_reset` never sees, sets or returns a password: it asks the identity provider to
send a reset link to the address on file, and only with a verification from an earlier step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import model_validator

from tools.base import ToolModel
from tools.contracts.types import Email, UserId

AccountStatus = Literal["active", "locked", "suspended", "deprovisioned"]


class AccountLookupInput(ToolModel):
    email: Email | None = None
    user_id: UserId | None = None

    @model_validator(mode="after")
    def _exactly_one_key(self) -> AccountLookupInput:
        if (self.email is None) == (self.user_id is None):
            raise ValueError("give exactly one of email or user_id")
        return self


class AccountLookupOutput(ToolModel):
    user_id: UserId
    email: Email
    display_name: str
    status: AccountStatus


class VerifyIdentityInput(ToolModel):
    user_id: UserId
    requester_email: Email


class VerifyIdentityOutput(ToolModel):
    user_id: UserId
    verified: bool
    verification_id: str
    method: Literal["requester_email_match"]


class PasswordResetInput(ToolModel):
    user_id: UserId
    verification_id: str
    send_link: Literal[True] = True
    revoke_sessions: bool = False


class PasswordResetOutput(ToolModel):
    user_id: UserId
    reset_link_sent: bool
    delivered_to: str
    expires_at: datetime
    sessions_revoked: bool
    request_id: str
