"""Okta-style identity provider over REST.

- `account_lookup`: `GET /api/v1/users?search=profile.email eq "..."` or `GET /api/v1/users/{id}`;
- `verify_identity`: the requester owns the account iff the user's profile email equals the
  ticket's authenticated requester email and the account may be reset (the sandbox's rule);
  the outcome is recorded in caseplan's database, because Okta keeps no such record;
- `password_reset`: only with that record (same run, same account, verified), then
  `POST /api/v1/users/{id}/lifecycle/reset_password?sendEmail=true[&revokeSessions=true]`.
  Okta emails the link itself; caseplan never sees a password or a link.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import RootModel

from tools.adapters.remote import RemoteModel, not_found_as
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
from tools.contracts.types import Email, mask_email
from tools.http import HttpService
from tools.verifications import VerificationLedger

OktaStatus = Literal["STAGED", "PROVISIONED", "ACTIVE", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT", "SUSPENDED", "DEPROVISIONED"]
FROM_OKTA: dict[str, str] = {
    "STAGED": "pending",
    "PROVISIONED": "pending",
    "ACTIVE": "active",
    "RECOVERY": "recovery",
    "PASSWORD_EXPIRED": "password_expired",
    "LOCKED_OUT": "locked",
    "SUSPENDED": "suspended",
    "DEPROVISIONED": "deprovisioned",
}


def okta_auth(token: str) -> dict[str, str]:
    return {"Authorization": f"SSWS {token}"}


class OktaProfile(RemoteModel):
    email: Email
    login: str | None = None
    displayName: str | None = None  # noqa: N815 (Okta's field names)
    firstName: str | None = None  # noqa: N815
    lastName: str | None = None  # noqa: N815


class OktaUser(RemoteModel):
    id: str
    status: OktaStatus
    profile: OktaProfile

    @property
    def account_status(self) -> str:
        return FROM_OKTA[self.status]

    @property
    def display_name(self) -> str:
        profile = self.profile
        full = " ".join(part for part in (profile.firstName, profile.lastName) if part)
        return profile.displayName or full or profile.login or profile.email


class OktaUsers(RootModel[list[OktaUser]]):
    pass


class OktaResetAnswer(RootModel[dict[str, Any] | None]):
    """`{}` when Okta sends the email itself; whatever else it holds is never passed on."""


class OktaDirectory:
    """The users API behind one HttpService (base URL, SSWS token, timeout)."""

    name = "okta"

    def __init__(self, http: HttpService) -> None:
        self.http = http

    def find_by_email(self, email: str) -> OktaUser:
        found = self.http.request_model(OktaUsers, "GET", "/api/v1/users", params={"search": f'profile.email eq "{email}"'}).root
        matches = [user for user in found if user.profile.email == email]  # the search is the API's; the match is ours
        if not matches:
            raise ToolError("permanent", "no account matches", status_code=404)
        if len(matches) > 1:
            raise ToolError("permanent", f"{len(matches)} accounts match that email", status_code=409)
        return matches[0]

    def get(self, user_id: str) -> OktaUser:
        return not_found_as(f"account {user_id}", lambda: self.http.request_model(OktaUser, "GET", f"/api/v1/users/{user_id}"))

    def reset_password(self, user_id: str, *, revoke_sessions: bool, idempotency_key: str) -> None:
        params = {"sendEmail": "true", **({"revokeSessions": "true"} if revoke_sessions else {})}
        not_found_as(
            f"account {user_id}",
            lambda: self.http.request_model(
                OktaResetAnswer, "POST", f"/api/v1/users/{user_id}/lifecycle/reset_password", params=params, idempotency_key=idempotency_key
            ),
        )


class OktaAccountLookup(AccountLookupTool):
    adapter = "okta"

    def __init__(self, directory: OktaDirectory) -> None:
        self.directory = directory

    def invoke(self, args: AccountLookupInput, ctx: ToolContext) -> AccountLookupOutput:
        user = self.directory.get(args.user_id) if args.user_id else self.directory.find_by_email(str(args.email))
        return AccountLookupOutput(user_id=user.id, email=user.profile.email, display_name=user.display_name, status=user.account_status)


class OktaVerifyIdentity(VerifyIdentityTool):
    adapter = "okta"

    def __init__(self, directory: OktaDirectory, ledger: VerificationLedger) -> None:
        self.directory = directory
        self.ledger = ledger

    def invoke(self, args: VerifyIdentityInput, ctx: ToolContext) -> VerifyIdentityOutput:
        user = self.directory.get(args.user_id)
        owns = user.profile.email == args.requester_email
        reason = None
        if not owns:
            reason = "requester does not own the account"
        elif user.account_status not in RESETTABLE_STATUSES:
            reason = f"account is {user.account_status}"
        verification_id = self.ledger.record(ctx, user.id, self.directory.name, verified=reason is None, reason=reason)
        if reason:
            raise ToolError("denied", f"identity not verified: {reason}", status_code=403)
        return VerifyIdentityOutput(user_id=user.id, verified=True, verification_id=verification_id, method="requester_email_match")


class OktaPasswordReset(PasswordResetTool):
    adapter = "okta"

    def __init__(self, directory: OktaDirectory, ledger: VerificationLedger, link_ttl: timedelta) -> None:
        self.directory = directory
        self.ledger = ledger
        self.link_ttl = link_ttl

    def invoke(self, args: PasswordResetInput, ctx: ToolContext) -> PasswordResetOutput:
        self.ledger.require(args.verification_id, args.user_id, ctx)
        user = self.directory.get(args.user_id)
        if user.account_status not in RESETTABLE_STATUSES:
            raise ToolError("denied", f"account is {user.account_status}", status_code=403)
        self.directory.reset_password(user.id, revoke_sessions=args.revoke_sessions, idempotency_key=ctx.idempotency_key)
        return PasswordResetOutput(
            user_id=user.id,
            reset_link_sent=True,
            delivered_to=mask_email(user.profile.email),
            expires_at=datetime.now(UTC) + self.link_ttl,
            sessions_revoked=args.revoke_sessions,
            request_id=derived_id("rst", ctx.idempotency_key),
        )
