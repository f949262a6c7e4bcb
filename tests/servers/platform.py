"""The support platform's webhook endpoint: checks the HMAC signature, drops repeated
deliveries by Idempotency-Key, and keeps what it accepted."""

from __future__ import annotations

from typing import Any

from tests.servers.base import FakeApi, Reply, Seen
from tools.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


class PlatformHooks(FakeApi):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        self.accepted: list[dict[str, Any]] = []

    def route(self, seen: Seen) -> Reply:
        timestamp, signature = seen.headers.get(TIMESTAMP_HEADER.lower(), ""), seen.headers.get(SIGNATURE_HEADER.lower(), "")
        if not verify(self.secret, timestamp, seen.raw, signature):
            return Reply(401, {"error": "bad signature"})
        self.accepted.append(seen.body)
        return Reply(204)
