"""Demo data for the sandbox: a few customers and tickets, enough to show every workflow."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import delete

from tools.sandbox.models import SandboxTable, SandboxTicket, SandboxUser
from tools.sandbox.store import SandboxStore

DEMO_USERS = [
    ("u_1001", "jane@example.com", "Jane Doe", "active"),
    ("u_1002", "omar@example.com", "Omar Haddad", "active"),
    ("u_1003", "li.wei@example.com", "Li Wei", "active"),
    ("u_1004", "sam@example.com", "Sam Locked", "locked"),
]

DEMO_TICKETS = [
    ("1001", "Order still not here", "Where is my order? It has been two weeks.", "open", "omar@example.com"),
    ("1002", "Billing question", "I was charged twice this month.", "pending", "li.wei@example.com"),
    ("1003", "Cannot sign in", "My login stopped working yesterday.", "open", "jane@example.com"),
    ("1004", "Old request", "Thanks, all sorted.", "closed", "jane@example.com"),
    ("1005", "Two-factor codes", "I changed phones and lost my authenticator.", "open", "sam@example.com"),
]


def seed_demo(store: SandboxStore, *, reset: bool = False) -> None:
    """Create the demo customers and tickets; with `reset`, wipe the sandbox first. Two
    processes seeding a new sandbox at once both end with it seeded (the loser's rows were
    already there)."""
    try:
        _seed(store, reset)
    except IntegrityError:
        _seed(store, reset=False)


def _seed(store: SandboxStore, reset: bool) -> None:
    with store.session() as session:
        if reset:
            for table in reversed(SandboxTable.metadata.sorted_tables):
                session.exec(delete(table))
        for user_id, email, name, status in DEMO_USERS:
            if session.get(SandboxUser, user_id) is None:
                session.add(SandboxUser(user_id=user_id, email=email, display_name=name, status=status))
        for ticket_id, subject, description, status, requester in DEMO_TICKETS:
            if session.get(SandboxTicket, ticket_id) is None:
                session.add(
                    SandboxTicket(
                        ticket_id=ticket_id,
                        subject=subject,
                        description=description,
                        status=status,
                        requester_email=requester,
                    )
                )
        session.commit()
