"""Identity-provider contracts: find an account, verify the requester owns it, send a reset link.

`password_reset` never sees, sets or returns a password: it asks the identity provider to
send a reset link to the address on file, and only with a verification from an earlier step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from tools.base import Tool, ToolInput, ToolModel
from tools.contracts.types import Email, UserId, require_present

AccountStatus = Literal["active", "recovery", "password_expired", "pending", "locked", "suspended", "deprovisioned"]

# Accounts whose owner may be sent a reset link: working ones, and ones already waiting for a
# new password. Locked, suspended, deprovisioned and never-activated accounts need a person.
RESETTABLE_STATUSES: frozenset[str] = frozenset({"active", "recovery", "password_expired"})


class AccountLookupInput(ToolInput):
    """Find one account by email or by user id."""

    model_config = ConfigDict(json_schema_extra=require_present("email", "user_id", exactly_one=True))

    email: Email | None = Field(None, description="The account's email address (give this or user_id).")
    user_id: UserId | None = Field(None, description="The identity provider's user id (give this or email).")

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


class VerifyIdentityInput(ToolInput):
    """Check that the authenticated requester owns the account (profile email match)."""

    user_id: UserId = Field(description="The account to verify, from account_lookup.")
    requester_email: Email = Field(
        description="The ticket's sender as authenticated by the support platform (never an address from the text)."
    )


class VerifyIdentityOutput(ToolModel):
    user_id: UserId
    verified: bool
    verification_id: str = Field(description="Pass to password_reset; valid only within the same run.")
    method: Literal["requester_email_match"]


class PasswordResetInput(ToolInput):
    """Have the identity provider email a reset link to the address on file."""

    user_id: UserId = Field(description="The account whose owner gets the reset link.")
    verification_id: str = Field(
        min_length=1, max_length=64, description="From a successful verify_identity step earlier in the same plan."
    )
    send_link: Literal[True] = Field(
        True, description="Always true: the provider emails a link to the address on file; no password or link is returned."
    )
    revoke_sessions: bool = Field(False, description="Also sign the account out everywhere.")


class PasswordResetOutput(ToolModel):
    user_id: UserId
    reset_link_sent: bool
    delivered_to: str = Field(description="The masked address the link went to, e.g. j***@example.com.")
    expires_at: datetime
    sessions_revoked: bool
    request_id: str


class AccountLookupTool(Tool[AccountLookupInput, AccountLookupOutput]):
    """The `account_lookup` contract; each identity adapter implements `invoke`."""

    name = "account_lookup"
    description = "Find a customer account by email or user id (ABCD: pull-up-account)."
    input_model = AccountLookupInput
    output_model = AccountLookupOutput
    side_effects = False


class VerifyIdentityTool(Tool[VerifyIdentityInput, VerifyIdentityOutput]):
    """The `verify_identity` contract; each identity adapter implements `invoke`."""

    name = "verify_identity"
    description = (
        "Check that the ticket's authenticated requester owns the account (ABCD: enter-details); "
        "refuses otherwise."
    )
    input_model = VerifyIdentityInput
    output_model = VerifyIdentityOutput
    side_effects = False


class PasswordResetTool(Tool[PasswordResetInput, PasswordResetOutput]):
    """The `password_reset` contract; each identity adapter implements `invoke`."""

    name = "password_reset"
    description = (
        "Send a password-reset link to the account's address on file (ABCD: make-password). "
        "Needs a verification from verify_identity; never handles a password."
    )
    input_model = PasswordResetInput
    output_model = PasswordResetOutput
    side_effects = True
