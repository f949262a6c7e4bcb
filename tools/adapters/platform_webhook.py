"""Escalation notices to the support platform: a signed `escalation.created` webhook.

Sent once per attempt of the `escalate_to_human` step (the executor retries transient
failures); the escalation id is the Idempotency-Key, so the platform can drop repeats.
"""

from __future__ import annotations

from typing import Any

from tools.escalation import Escalation
from tools.webhooks import WebhookSender

EVENT = "escalation.created"


def escalation_payload(escalation: Escalation, run_url: str | None = None) -> dict[str, Any]:
    """What the platform gets: who, why, how urgent, and links to the run and the evidence."""
    return {
        "escalation_id": escalation.id,
        "run_id": escalation.run_id,
        "ticket_id": escalation.ticket_id,
        "reason": escalation.reason,
        "priority": escalation.priority,
        "queue": escalation.queue,
        "summary": escalation.summary,
        "links": {
            "run": run_url.replace("{run_id}", escalation.run_id) if run_url else None,
            "evidence": list(escalation.evidence or []),
        },
    }


class WebhookEscalationNotifier:
    name = "webhook"

    def __init__(self, sender: WebhookSender, run_url: str | None = None) -> None:
        self.sender = sender
        self.run_url = run_url

    def notify(self, escalation: Escalation) -> None:
        self.sender.deliver(EVENT, escalation_payload(escalation, self.run_url), idempotency_key=escalation.id)
