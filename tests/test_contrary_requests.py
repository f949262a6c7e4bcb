"""Tickets that sound like a workflow but say otherwise ("don't close it yet", "I did not
forget my password") go to a person: meaning-based routing cannot tell them apart, the
templates' `not_when` patterns can, and nothing is changed before a person looks."""

from __future__ import annotations

import pytest

from agent.runner import Runner
from agent.tickets import Ticket
from tests.policy_support import sandbox_resets, side_effects
from tests.test_policy_gate import _ticket_row

CONTRARY = [
    ("Don't close ticket 1003 yet, it is still broken", "close_ticket"),
    ("Why did you close my ticket 1003? It is not fixed!", "close_ticket"),
    ("Keep ticket 1003 open please, I will send more details tomorrow", "close_ticket"),
    ("Only close ticket 1003 after the refund has been processed", "close_ticket"),
    ("I'd rather you didn't close ticket 1003 yet, I will confirm tomorrow", "close_ticket"),
    ("Please hold off on closing ticket 1003 until I test it again tomorrow", "close_ticket"),
    ("Please close my account for good", "close_ticket"),
    ("Do not reset my password! Someone keeps requesting reset links for my account", "password_reset"),
    ("I haven't forgotten my password, I know it, but I can't log in", "password_reset"),
]


@pytest.mark.parametrize(("text", "sounds_like"), CONTRARY, ids=[text[:30] for text, _ in CONTRARY])
def test_a_ticket_that_says_otherwise_changes_nothing_and_reaches_a_person(runner, runtime, text, sounds_like):
    result = runner.submit(Ticket(text=text, requester_email="jane@example.com", ticket_id="1003"))
    assert result.status == "escalated", (result.route, result.steps)
    assert result.escalation["reason"] == "low_confidence" and f"{sounds_like}: the ticket says otherwise" in result.escalation["detail"]
    assert set(side_effects(runtime, result.run_id)) == {"escalate_to_human"}
    assert sandbox_resets(runtime) == (0, 0) and _ticket_row(runtime, "1003").status == "open"


def test_the_plain_request_still_runs(runtime):
    """The patterns are narrow: the ordinary request is served as before."""
    result = Runner(runtime).submit(Ticket(text="Thanks, it's fixed now, you can close ticket 1003", requester_email="jane@example.com", ticket_id="1003"))
    assert result.status == "completed" and result.route["template"] == "close_ticket"
    assert _ticket_row(runtime, "1003").status == "solved"


def test_an_account_mentioned_after_the_ticket_is_not_a_request_to_close_the_account(runtime):
    text = "Thanks, you can close my ticket, my account works again"
    result = Runner(runtime).submit(Ticket(text=text, requester_email="jane@example.com", ticket_id="1003"))
    assert result.status == "completed" and _ticket_row(runtime, "1003").status == "solved", result.escalation
