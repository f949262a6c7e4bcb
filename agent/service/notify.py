"""The completion webhook: tells the platform a run finished, signed and retried (tools.webhooks)."""

from __future__ import annotations

import os

import structlog

from agent.runner import RunResult
from agent.settings import ServiceWebhookSettings
from tools.resilience import RetryPolicy
from tools.webhooks import Delivery, WebhookSender

log = structlog.get_logger(__name__)

FINISHED_EVENT = "run.finished"


class CompletionNotifier:
    def __init__(self, sender: WebhookSender) -> None:
        self.sender = sender

    @classmethod
    def from_settings(cls, settings: ServiceWebhookSettings) -> CompletionNotifier | None:
        """None when no URL is configured; a URL without its secret is a configuration error."""
        if not settings.url:
            return None
        secret = os.environ.get(settings.secret_env, "")
        if not secret:
            raise ValueError(f"service.webhook.url is set but the secret variable {settings.secret_env} is empty")
        policy = RetryPolicy(max_attempts=settings.max_attempts, backoff_base_s=settings.backoff_base_s, backoff_max_s=settings.backoff_max_s)
        return cls(WebhookSender(settings.url, secret, policy=policy, timeout_s=settings.timeout_s))

    def run_finished(self, result: RunResult, ticket_id: str | None) -> Delivery:
        """One event per run: receivers drop repeats (a re-leased run may send it again) by its key."""
        payload = {
            "run_id": result.run_id,
            "ticket_id": ticket_id,
            "status": result.status,
            "template": (result.plan or {}).get("template"),
            "plan_hash": result.plan_hash,
            "reply": result.reply,
            "citations": result.citations,
            "escalation": result.escalation,
            "error": result.error,
        }
        delivery = self.sender.send(FINISHED_EVENT, payload, idempotency_key=f"{result.run_id}:{FINISHED_EVENT}")
        report = log.info if delivery.status == "delivered" else log.warning  # the platform was never told: someone should know
        report("webhook", run_id=result.run_id, status=delivery.status, attempts=delivery.attempts, error=delivery.error)
        return delivery
