"""Sandbox helpdesk: ticket lookup and update over the sandbox database."""

from __future__ import annotations

from sqlmodel import Session, select

from tools.base import ToolContext, ToolError
from tools.contracts.tickets import (
    TicketLookupInput,
    TicketLookupTool,
    TicketUpdateInput,
    TicketUpdateOutput,
    TicketUpdateTool,
    TicketView,
    transition_error,
)
from tools.sandbox.models import SandboxComment, SandboxTicket, utcnow
from tools.sandbox.store import SandboxStore


def _view(ticket: SandboxTicket) -> TicketView:
    return TicketView(
        ticket_id=ticket.ticket_id,
        subject=ticket.subject,
        status=ticket.status,
        requester_email=ticket.requester_email,
        tags=list(ticket.tags or []),
        updated_at=ticket.updated_at,
    )


def _get_ticket(session: Session, ticket_id: str) -> SandboxTicket:
    ticket = session.get(SandboxTicket, ticket_id)
    if ticket is None:
        raise ToolError("permanent", f"ticket {ticket_id} not found", status_code=404)
    return ticket


class SandboxTicketLookup(TicketLookupTool):
    adapter = "sandbox"
    in_process = True

    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    def invoke(self, args: TicketLookupInput, ctx: ToolContext) -> TicketView:
        with self.store.session() as session:
            return _view(_get_ticket(session, args.ticket_id))


class SandboxTicketUpdate(TicketUpdateTool):
    adapter = "sandbox"
    in_process = True

    def __init__(self, store: SandboxStore) -> None:
        self.store = store

    def invoke(self, args: TicketUpdateInput, ctx: ToolContext) -> TicketUpdateOutput:
        return self.store.once(ctx.idempotency_key, self.name, TicketUpdateOutput, lambda s: self._apply(s, args))

    def _apply(self, session: Session, args: TicketUpdateInput) -> TicketUpdateOutput:
        ticket = _get_ticket(session, args.ticket_id)
        previous = ticket.status
        if args.status is not None:
            problem = transition_error(previous, args.status)
            if problem:
                raise ToolError("permanent", problem, status_code=422)
            ticket.status = args.status
        elif previous == "closed":
            raise ToolError("permanent", "ticket is closed; comments cannot be added", status_code=422)
        comments = [
            SandboxComment(ticket_id=ticket.ticket_id, public=public, body=body)
            for public, body in ((True, args.public_reply), (False, args.internal_note))
            if body is not None
        ]
        session.add_all(comments)
        ticket.updated_at = utcnow()
        session.add(ticket)
        session.flush()
        return TicketUpdateOutput(
            ticket_id=ticket.ticket_id,
            previous_status=previous,
            status=ticket.status,
            comment_ids=[str(comment.id) for comment in comments],
        )


def open_ticket(store: SandboxStore, subject: str, description: str, requester_email: str | None) -> str:
    """File a ticket as the platform would; the CLI uses this when no ticket id is given.

    Like a helpdesk that threads repeated messages, an identical unresolved ticket from the
    same requester is reused, so submitting the same ticket twice means the same ticket.
    """
    with store.session() as session:
        same = session.exec(
            select(SandboxTicket).where(
                SandboxTicket.description == description,
                SandboxTicket.requester_email == requester_email,
                SandboxTicket.status.not_in(("solved", "closed")),
            )
        ).first()
        if same is not None:
            return same.ticket_id
        ids = session.exec(select(SandboxTicket.ticket_id)).all()
        ticket_id = str(max((int(i) for i in ids if i.isdigit()), default=1000) + 1)
        session.add(
            SandboxTicket(
                ticket_id=ticket_id,
                subject=subject[:200],
                description=description,
                status="new",
                requester_email=requester_email,
            )
        )
        session.commit()
        return ticket_id
