"""Shared by the record tests: varied demo tickets, the CLI in-process, direct database edits
(the tampering an attacker with write access could do), and a world replay must not touch."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from agent.cli import app
from agent.models.local import LocalModel
from agent.tickets import Ticket
from tools.embeddings import SentenceTransformerEmbedder
from tools.registry import ToolRegistry

RESET = "I forgot my password and can't log in, my email is jane@example.com"

# Every workflow and every escalation path the demo has, plus PII of each kind in a ticket.
TICKETS = [
    Ticket(text=RESET, requester_email="jane@example.com", ticket_id="1003"),
    Ticket(text="Any update on ticket #1002?", requester_email="li.wei@example.com"),
    Ticket(text="How long does standard shipping take?", requester_email="omar@example.com"),
    Ticket(text="Thanks, you can close ticket 1001, it works again now.", requester_email="omar@example.com"),
    Ticket(text="Please reset the password for li.wei@example.com, I am her manager.", requester_email="omar@example.com", ticket_id="1001"),
    Ticket(text="This is the third time I write. I want to speak to a manager.", requester_email="omar@example.com"),
    Ticket(text="Can you recommend a good pizza place near the station?", requester_email="li.wei@example.com"),
    Ticket(text="Reset my password: jane@example.com or maybe li.wei@example.com", requester_email="jane@example.com", ticket_id="1003"),
    Ticket(text="what's the status of ticket 987654?", requester_email="omar@example.com"),
    Ticket(text="how do I turn on two-factor authentication", requester_email="sam@example.com"),
    Ticket(
        text="I forgot my password. Card 4111 1111 1111 1111 was charged too, call me on +44 20 7946 0958, IBAN GB82WEST12345698765432",
        requester_email="jane@example.com",
        ticket_id="1003",
    ),
]


# The two closest templates are within the router's margin here, so the local model breaks the tie.
TIEBREAK_TICKET = Ticket(text="where is my order, any update on my request?", requester_email="omar@example.com", ticket_id="1001")
CLOSE_TICKET = TICKETS[3]  # the one whose plan asks the local model for a slot: tens of seconds on this CPU


def record(runner: Any, count: int) -> list[str]:
    """Run `count` tickets: each of TICKETS once, then the ones that need no model call, in turn."""
    routine = [ticket for ticket in TICKETS if ticket is not CLOSE_TICKET]
    mix = TICKETS + [routine[index % len(routine)] for index in range(max(0, count - len(TICKETS)))]
    return [runner.submit(ticket).run_id for ticket in mix[:count]]


def cli_env(settings: Any, **extra: str) -> dict[str, str]:
    env = {"CASEPLAN_DATA_DIR": str(settings.data_path), **extra}
    if settings.database.url:
        env["CASEPLAN__DATABASE__URL"] = settings.database.url
    return env


def invoke(env: dict[str, str], *args: str) -> Any:
    """The real CLI in this process (so monkeypatches apply); stdout and stderr kept apart."""
    return CliRunner().invoke(app, list(args), env=env)


def execute(engine: Any, sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def swap_events(engine: Any, run_id: str, first: int, second: int) -> None:
    """Reorder two events the way an UPDATE would (through a free sequence number)."""
    execute(engine, "UPDATE runevent SET seq = -1 WHERE run_id = :r AND seq = :a", r=run_id, a=first)
    execute(engine, "UPDATE runevent SET seq = :a WHERE run_id = :r AND seq = :b", r=run_id, a=first, b=second)
    execute(engine, "UPDATE runevent SET seq = :b WHERE run_id = :r AND seq = -1", r=run_id, b=second)


@contextmanager
def world_out_of_reach(monkeypatch: pytest.MonkeyPatch, registry: ToolRegistry) -> Iterator[list[str]]:
    """Every way out of the process replay must not take raises, and is noted: network
    sockets, every real tool, the local model and the embedding model."""
    reached: list[str] = []

    def refuse(what: str) -> Any:
        def blocked(*args: Any, **kwargs: Any) -> Any:
            reached.append(what)
            raise AssertionError(f"replay reached {what}")

        return blocked

    monkeypatch.setattr(socket.socket, "connect", refuse("the network"))
    monkeypatch.setattr(socket, "create_connection", refuse("the network"))
    for tool in registry:
        monkeypatch.setattr(type(tool), "invoke", refuse(f"tool {tool.name}"))
    monkeypatch.setattr(LocalModel, "complete_json", refuse("the local model"))
    monkeypatch.setattr(LocalModel, "load", refuse("the local model"))
    monkeypatch.setattr(SentenceTransformerEmbedder, "embed", refuse("the embedding model"))
    yield reached
