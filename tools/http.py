"""HTTP for adapters: one attempt per call, every failure mapped to a typed ToolError.

Connection errors, timeouts, 429 (with its Retry-After) and 5xx are transient; 401/403 are
denied; other 4xx are permanent; a body that is not the JSON promised (an HTML error page,
truncated JSON) is permanent. Retrying is not done here but by `tools.resilience`, once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from tools.base import ToolError

IDEMPOTENCY_HEADER = "Idempotency-Key"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _reason(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text[:160] if text else response.reason_phrase


class HttpService:
    """A remote API: base URL, auth headers, timeout. `request` returns parsed JSON or raises."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.client = client or httpx.Client(base_url=base_url, headers=headers or {}, timeout=timeout_s)

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """One attempt; a 2xx response comes back, everything else raises a typed ToolError."""
        sent = dict(headers or {})
        if idempotency_key:
            sent[IDEMPOTENCY_HEADER] = idempotency_key
        try:
            response = self.client.request(method, path, json=json_body, content=content, params=params, headers=sent)
        except httpx.TimeoutException as exc:
            raise ToolError("transient", f"{self.name}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise ToolError("transient", f"{self.name}: connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise ToolError(
                "transient", f"{self.name}: HTTP {status}: {_reason(response)}", status_code=status, retry_after=_retry_after(response)
            )
        if status in (401, 403):
            raise ToolError("denied", f"{self.name}: HTTP {status}: {_reason(response)}", status_code=status)
        if status >= 400:
            raise ToolError("permanent", f"{self.name}: HTTP {status}: {_reason(response)}", status_code=status)
        return response

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """One attempt that must return JSON (or nothing, for 204)."""
        response = self.call(method, path, json_body=json_body, params=params, idempotency_key=idempotency_key)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            kind = response.headers.get("content-type", "unknown content type")
            raise ToolError(
                "permanent", f"{self.name}: HTTP {response.status_code} with a body that is not JSON ({kind})", status_code=response.status_code
            ) from None
