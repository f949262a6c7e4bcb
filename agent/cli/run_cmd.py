"""`caseplan run`, `caseplan resume` and `caseplan demo`: process tickets end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from sqlmodel import select

from agent.cli.common import echo_json, fail, state, with_errors
from agent.cli.render import print_result
from agent.runner import Runner
from agent.slots import find_pattern
from agent.tickets import Ticket, decode_ticket_bytes, parse_ticket, ticket_document_bytes
from tools.base import ToolContext, ToolError
from tools.contracts.tickets import TicketLookupInput
from tools.safe_parse import read_bounded
from tools.sandbox.helpdesk import open_ticket
from tools.sandbox.models import SandboxOutboxEmail, SandboxUser
from tools.sandbox.seed import seed_demo
from tools.sandbox.store import SandboxStore

DEMO_TICKETS: list[dict[str, Any]] = [
    {"text": "I forgot my password and can't log in, my email is jane@example.com", "requester_email": "jane@example.com"},
    {"text": "Hi, any news on ticket #1002? I was charged twice.", "requester_email": "li.wei@example.com"},
    {"text": "How long does standard shipping take?", "requester_email": "omar@example.com"},
    {"text": "Thanks, you can close ticket 1003, it works again now.", "requester_email": "jane@example.com"},
    {"text": "Please reset the password for li.wei@example.com, I am her manager.", "requester_email": "omar@example.com"},
    {"text": "This is the third time I write. I want to speak to a manager.", "requester_email": "omar@example.com"},
    {"text": "Can you recommend a good pizza place near the station?", "requester_email": "li.wei@example.com"},
]


def ensure_demo_data(sandbox: SandboxStore) -> None:
    """Seed the sandbox on first use, so `caseplan run` works with zero set-up."""
    with sandbox.session() as session:
        if session.exec(select(SandboxUser).limit(1)).first() is None:
            seed_demo(sandbox)


def _helpdesk_requester(runtime: Any, ticket_id: str) -> str | None:
    """The ticket's requester as the configured helpdesk (sandbox or REST) has it; unknown when
    the lookup fails, and the run itself then meets and records the same failure."""
    lookup = runtime.registry.get("ticket_lookup")
    try:
        return lookup.invoke(TicketLookupInput(ticket_id=ticket_id), ToolContext("cli", "requester", "")).requester_email
    except ToolError:
        return None


def _file_in_sandbox(runtime: Any, ticket: Ticket) -> Ticket:
    """Act as the platform: a ticket without an id is filed in the sandbox helpdesk first."""
    updates: dict[str, Any] = {}
    requester = ticket.requester_email
    if ticket.ticket_id is None and runtime.settings.tools.adapters.ticket_update != "sandbox":
        fail("the ticket tools use a real helpdesk: pass --ticket-id (the CLI files new tickets only in the sandbox)")
    if ticket.ticket_id is None:
        if requester is None:
            emails = find_pattern("email", ticket.full_text)
            if len(emails) == 1:
                requester = emails[0]
                typer.echo(f"note: requester taken from the ticket text ({requester}); pass --requester to set the sender", err=True)
        updates["ticket_id"] = open_ticket(runtime.sandbox, ticket.subject or ticket.text[:60], ticket.text, requester)
    elif requester is None:
        requester = _helpdesk_requester(runtime, ticket.ticket_id)
    if requester != ticket.requester_email:
        updates["requester_email"] = requester
    return ticket.model_copy(update=updates) if updates else ticket


def register(app: typer.Typer) -> None:
    @app.command("run")
    @with_errors
    def run(
        ctx: typer.Context,
        text: str = typer.Argument(None, help="Ticket text (or use --file)."),
        file: Path = typer.Option(None, "--file", "-f", help="Ticket JSON: {text, subject?, ticket_id?, requester_email?, tags?}."),
        requester: str = typer.Option(None, "--requester", help="Authenticated sender's email."),
        ticket_id: str = typer.Option(None, "--ticket-id", help="Existing helpdesk ticket id."),
        subject: str = typer.Option(None, "--subject"),
        as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON."),
    ) -> None:
        """Process one ticket: route, plan, check, execute, reply. Prints the run id."""
        settings = state(ctx).settings
        limit = settings.limits.max_ticket_chars
        if (text is None) == (file is None):
            fail("give the ticket text or --file (one of them)")
        if file is not None:
            try:
                raw = read_bounded(file, ticket_document_bytes(limit))
            except OSError as exc:
                fail(f"{file}: {exc.strerror}")
            except ValueError as exc:
                fail(f"{file}: {exc}; a ticket document holds at most {limit:,} characters of text")
            ticket = decode_ticket_bytes(raw, limit)
            overrides = {"requester_email": requester, "ticket_id": ticket_id, "subject": subject}
            ticket = parse_ticket({**ticket.model_dump(exclude_none=True), **{k: v for k, v in overrides.items() if v}}, limit)
        else:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                fail("ticket text is not valid UTF-8")
            fields = {"text": text, "requester_email": requester, "ticket_id": ticket_id, "subject": subject}
            ticket = parse_ticket({k: v for k, v in fields.items() if v is not None}, limit)
        runtime = state(ctx).runtime()
        ensure_demo_data(runtime.sandbox)
        result = Runner(runtime).submit(_file_in_sandbox(runtime, ticket))
        echo_json(result.model_dump(mode="json")) if as_json else print_result(result)

    @app.command("resume")
    @with_errors
    def resume(ctx: typer.Context, run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
        """Continue a run that was interrupted (crash, kill) from its last checkpoint."""
        result = Runner(state(ctx).runtime()).resume(run_id)
        echo_json(result.model_dump(mode="json")) if as_json else print_result(result)

    @app.command("demo")
    @with_errors
    def demo(ctx: typer.Context, reset: bool = typer.Option(True, help="Wipe the sandbox and reseed it first.")) -> None:
        """Seed the sandbox and process a handful of varied tickets."""
        if state(ctx).settings.tools.adapters.ticket_update != "sandbox":
            fail("the demo files its tickets in the sandbox helpdesk; run it with the sandbox ticket tools")
        runtime = state(ctx).runtime()
        seed_demo(runtime.sandbox, reset=reset)
        runner = Runner(runtime)
        summary = []
        for number, fields in enumerate(DEMO_TICKETS, start=1):
            ticket = _file_in_sandbox(runtime, parse_ticket(fields, state(ctx).settings.limits.max_ticket_chars))
            typer.echo(f"\n=== ticket {number}/{len(DEMO_TICKETS)} from {ticket.requester_email}: {ticket.text}")
            result = runner.submit(ticket)
            print_result(result)
            template = (result.plan or {}).get("template", "-")
            summary.append((result.run_id, result.status, template, runtime.store.get_run(result.run_id).escalation_reason or ""))
        typer.echo("\n=== summary")
        for run_id, status, template, reason in summary:
            typer.echo(f"  {run_id}  {status:<10} {template:<17} {reason}")
        with runtime.sandbox.session() as session:
            mails = session.exec(select(SandboxOutboxEmail).order_by(SandboxOutboxEmail.id)).all()
        typer.echo("\n=== sandbox outbox (what the identity provider sent)")
        for mail in mails:
            typer.echo(f"  to {mail.to}: {mail.subject}")
