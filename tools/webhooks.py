"""Signed webhooks to the support platform (escalations, run completions).

The body is JSON; `X-Caseplan-Signature: sha256=<hex>` is HMAC-SHA256 over
`<timestamp>.<body>` with a shared secret, `X-Caseplan-Timestamp` lets receivers refuse
replays, and `Idempotency-Key` lets them drop duplicates. Deliveries are retried through
`tools.resilience`, the same loop the executor uses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel

from tools.base import ToolError
from tools.http import HttpService
from tools.resilience import RetryPolicy, run_with_retries

SIGNATURE_HEADER = "X-Caseplan-Signature"
TIMESTAMP_HEADER = "X-Caseplan-Timestamp"
EVENT_HEADER = "X-Caseplan-Event"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300, now: float | None = None) -> bool:
    """What a receiver does: constant-time compare, and refuse stale timestamps."""
    try:
        age = abs((now or time.time()) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class Delivery(BaseModel):
    event: str
    url: str
    status: str  # delivered | failed
    attempts: int
    http_status: int | None = None
    error: str | None = None


class WebhookSender:
    """Posts signed events to one URL: `send` retries and reports, `deliver` tries once and raises."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        policy: RetryPolicy | None = None,
        timeout_s: float = 5.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.secret = secret
        self.policy = policy or RetryPolicy(max_attempts=5, backoff_base_s=0.2, backoff_max_s=10)
        self.http = HttpService("webhook", url, timeout_s=timeout_s, client=client)
        self.sleep = sleep

    def deliver(self, event: str, payload: dict[str, Any], *, idempotency_key: str) -> None:
        """One signed attempt; raises a typed ToolError. For callers that retry through the
        executor (a plan step), so there is still only one retry loop around a delivery."""
        body = json.dumps({"event": event, "data": payload}, separators=(",", ":"), default=str).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: event,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
        }
        self.http.call("POST", self.url, content=body, headers=headers, idempotency_key=idempotency_key)

    def send(self, event: str, payload: dict[str, Any], *, idempotency_key: str) -> Delivery:
        """Deliver with retries (for events outside plans); never raises, returns what happened."""
        try:
            _, attempts = run_with_retries(
                lambda _: self.deliver(event, payload, idempotency_key=idempotency_key), self.policy, sleep=self.sleep
            )
        except ToolError as exc:
            return Delivery(event=event, url=self.url, status="failed", attempts=exc.attempts, http_status=exc.status_code, error=exc.message)
        return Delivery(event=event, url=self.url, status="delivered", attempts=attempts)
