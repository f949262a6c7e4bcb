"""Zendesk-style helpdesk over REST: `GET/PUT /api/v2/tickets/{id}.json`.

The requester's email comes from the users sideloaded with `include=users`; Zendesk calls the
`on_hold` status `hold`. An update is one PUT carrying the status and one comment (public reply
or internal note); a second comment needs a second PUT, under its own derived idempotency key.
The previous status is read from the update's audit, so a retried update whose first attempt
already went through still reports the status it changed from.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, ValidationError

from tools.adapters.remote import RemoteModel, not_found_as
from tools.base import ToolContext, ToolError, first_problem
from tools.contracts.tickets import (
    TicketLookupInput,
    TicketLookupTool,
    TicketUpdateInput,
    TicketUpdateOutput,
    TicketUpdateTool,
    TicketView,
    transition_error,
)
from tools.contracts.types import EMAIL_RE
from tools.http import HttpService

ZendeskStatus = Literal["new", "open", "pending", "hold", "solved", "closed"]
FROM_ZENDESK: dict[str, str] = {"new": "new", "open": "open", "pending": "pending", "hold": "on_hold", "solved": "solved", "closed": "closed"}
TO_ZENDESK: dict[str, str] = {ours: theirs for theirs, ours in FROM_ZENDESK.items()}


def zendesk_auth(token: str, email: str | None = None) -> dict[str, str]:
    """API-token auth (`{email}/token:{token}`, Basic) when an agent email is given, else OAuth bearer."""
    if email:
        encoded = base64.b64encode(f"{email}/token:{token}".encode()).decode()
        return {"Authorization": f"Basic {encoded}"}
    return {"Authorization": f"Bearer {token}"}


class ZendeskTicket(RemoteModel):
    id: int
    subject: str | None = None
    status: ZendeskStatus
    requester_id: int | None = None
    tags: list[str] = []
    updated_at: datetime | None = None


class ZendeskUser(RemoteModel):
    id: int
    email: str | None = None


class TicketEnvelope(RemoteModel):
    ticket: ZendeskTicket
    users: list[ZendeskUser] = []


class AuditEvent(RemoteModel):
    type: str
    id: int | None = None
    field_name: str | None = None
    previous_value: Any = None


class Audit(RemoteModel):
    events: list[AuditEvent] = []


class UpdateEnvelope(RemoteModel):
    ticket: ZendeskTicket
    audit: Audit = Field(default_factory=Audit)


class ZendeskHelpdesk:
    """The tickets API behind one HttpService (base URL, auth, timeout)."""

    name = "zendesk"

    def __init__(self, http: HttpService) -> None:
        self.http = http

    def get(self, ticket_id: str) -> TicketView:
        envelope = not_found_as(
            f"ticket {ticket_id}",
            lambda: self.http.request_model(TicketEnvelope, "GET", f"/api/v2/tickets/{ticket_id}.json", params={"include": "users"}),
        )
        ticket = envelope.ticket
        if str(ticket.id) != str(ticket_id):
            raise ToolError("permanent", f"zendesk answered with ticket {ticket.id} when asked for ticket {ticket_id}")
        email = next((user.email for user in envelope.users if user.id == ticket.requester_id), None)
        try:
            return TicketView(
                ticket_id=str(ticket.id),
                subject=ticket.subject or "",
                status=FROM_ZENDESK[ticket.status],
                requester_email=email if email and EMAIL_RE.match(email) else None,
                tags=ticket.tags,
                updated_at=ticket.updated_at,
            )
        except ValidationError as exc:
            raise ToolError("permanent", f"zendesk: ticket {ticket_id} has a value caseplan cannot use: {first_problem(exc)}") from None

    def update(self, ticket_id: str, changes: dict[str, Any], idempotency_key: str) -> UpdateEnvelope:
        return not_found_as(
            f"ticket {ticket_id}",
            lambda: self.http.request_model(
                UpdateEnvelope, "PUT", f"/api/v2/tickets/{ticket_id}.json", json_body={"ticket": changes}, idempotency_key=idempotency_key
            ),
        )


class ZendeskTicketLookup(TicketLookupTool):
    adapter = "zendesk"

    def __init__(self, helpdesk: ZendeskHelpdesk) -> None:
        self.helpdesk = helpdesk

    def invoke(self, args: TicketLookupInput, ctx: ToolContext) -> TicketView:
        return self.helpdesk.get(args.ticket_id)


class ZendeskTicketUpdate(TicketUpdateTool):
    adapter = "zendesk"

    def __init__(self, helpdesk: ZendeskHelpdesk) -> None:
        self.helpdesk = helpdesk

    def invoke(self, args: TicketUpdateInput, ctx: ToolContext) -> TicketUpdateOutput:
        current = self.helpdesk.get(args.ticket_id).status
        # A ticket already in the requested status may be our own earlier attempt (the response
        # was lost): the platform decides that case, answering from its idempotency record.
        if args.status is not None and args.status != current:
            problem = transition_error(current, args.status)
            if problem:
                raise ToolError("permanent", problem, status_code=422)
        if args.status is None and current == "closed":
            raise ToolError("permanent", "ticket is closed; comments cannot be added", status_code=422)
        comments = [{"body": body, "public": public} for public, body in ((True, args.public_reply), (False, args.internal_note)) if body]
        first: dict[str, Any] = {"status": TO_ZENDESK[args.status]} if args.status else {}
        if comments:
            first["comment"] = comments[0]
        responses = [self.helpdesk.update(args.ticket_id, first, ctx.idempotency_key)]
        for number, comment in enumerate(comments[1:], start=2):
            responses.append(self.helpdesk.update(args.ticket_id, {"comment": comment}, f"{ctx.idempotency_key}.{number}"))
        events = [event for response in responses for event in response.audit.events]
        changed_from = next((e.previous_value for e in events if e.type == "Change" and e.field_name == "status"), None)
        return TicketUpdateOutput(
            ticket_id=args.ticket_id,
            previous_status=FROM_ZENDESK.get(str(changed_from), current),
            status=FROM_ZENDESK[responses[-1].ticket.status],
            comment_ids=[str(e.id) for e in events if e.type == "Comment" and e.id is not None],
        )
