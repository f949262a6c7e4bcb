"""HTTP for adapters: one attempt per call, every failure mapped to a typed ToolError.

Connection errors, timeouts, 429 (with its Retry-After) and 5xx are transient; 401/403 are
denied; other 4xx are permanent, and so are 3xx (redirects are not followed: the credentials
would go with them, and a redirect to a login page is not the answer asked for); a body that is
not the JSON promised (an HTML error page, truncated JSON, JSON of the wrong shape) is
permanent. Error messages quote the platform's own words with the credentials sent to it
removed (a platform may echo them back), since they end up in the record and the queue. Retrying is not done here but by
`tools.resilience`, once.

Every response is read within the call's timeout and a size bound (`fetch`): httpx's timeouts
bound each read, not the whole response, so a server that sends its headers or body a byte a
second, or never stops sending, would otherwise hold the call, a worker thread and its memory
for ever (`tools.http_deadline` bounds the socket waits of clients it builds).
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from tools.base import ToolError, first_problem
from tools.http_deadline import bounded_client, deadline

IDEMPOTENCY_HEADER = "Idempotency-Key"
REASON_CHARS = 160
MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # far above any ticket, user or completion these APIs return
# Describe the bytes as sent; the body `fetch` keeps is already decoded and complete.
_TRANSFER_HEADERS = ("content-encoding", "content-length", "transfer-encoding")
ModelT = TypeVar("ModelT", bound=BaseModel)

_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)
# Where common APIs put a one-line error: Zendesk (error/description), Okta (errorSummary), RFC 7807 (title/detail).
_ERROR_FIELDS = ("errorSummary", "description", "detail", "title", "message", "error")


class ResponseRefused(Exception):
    """A response cut off before its end: larger than allowed (permanent: it will be as large
    next time) or slower than the whole call may take (transient)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def fetch(client: httpx.Client, method: str, url: str, *, deadline_s: float, max_bytes: int = MAX_RESPONSE_BYTES, **kwargs: Any) -> httpx.Response:
    """Send a request and read its whole (decoded) body within `deadline_s` seconds and
    `max_bytes`, or raise ResponseRefused; httpx's own errors pass through."""
    ends = time.monotonic() + deadline_s
    late = ResponseRefused(f"timed out: no complete response within {deadline_s:g}s", transient=True)
    try:
        with deadline(deadline_s), client.stream(method, url, **kwargs) as streamed:
            body = bytearray()
            for piece in streamed.iter_bytes():
                body += piece
                if len(body) > max_bytes:
                    raise ResponseRefused(f"response larger than {max_bytes:,} bytes", transient=False)
                if time.monotonic() > ends:  # a client not built by bounded_client (a test double's)
                    raise late
    except httpx.TimeoutException:
        if time.monotonic() >= ends:  # the whole call's deadline, not one slow read
            raise late from None
        raise
    headers = [(name, value) for name, value in streamed.headers.multi_items() if name.lower() not in _TRANSFER_HEADERS]
    return httpx.Response(streamed.status_code, headers=headers, content=bytes(body), request=streamed.request)


def retry_after_s(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or unreadable."""
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


def _reason(response: httpx.Response, secrets: Sequence[str] = ()) -> str:
    """A short, readable reason: the API's own error line, or an HTML page's text, not its
    markup; `secrets` replaced before it is cut short, so no piece of one is left."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        for field in _ERROR_FIELDS:
            if isinstance(body.get(field), str) and body[field].strip():
                return _scrub(" ".join(body[field].split()), secrets)[:REASON_CHARS]
    text = response.text
    if "html" in response.headers.get("content-type", "") or text.lstrip()[:1] == "<":
        text = html.unescape(_TAG.sub(" ", text))
    text = _scrub(" ".join(text.split()), secrets)
    return text[:REASON_CHARS] if text else response.reason_phrase


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "[credential]")
    return text


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
        self.timeout_s = timeout_s  # each read, and (through `fetch`) the whole call
        # Header values and their words ("Bearer <token>"): never quoted back in an error.
        sent = [value for value in (headers or {}).values() if value]
        self._secrets = sorted({part for value in sent for part in (value, *value.split()) if len(part) >= 8}, key=len, reverse=True)
        self.client = client or bounded_client(
            base_url=base_url, headers={"Accept": "application/json", **(headers or {})}, timeout=timeout_s
        )

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
            response = fetch(self.client, method, path, deadline_s=self.timeout_s, json=json_body, content=content, params=params, headers=sent)
        except httpx.TimeoutException as exc:
            raise ToolError("transient", f"{self.name}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise ToolError("transient", f"{self.name}: connection failed ({type(exc).__name__})") from None
        except httpx.DecodingError:
            raise ToolError("permanent", f"{self.name}: the response body could not be decoded") from None
        except ResponseRefused as exc:
            raise ToolError("transient" if exc.transient else "permanent", f"{self.name}: {exc}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise ToolError(
                "transient", f"{self.name}: HTTP {status}: {self._reason(response)}", status_code=status, retry_after=retry_after_s(response)
            )
        if status in (401, 403):
            raise ToolError("denied", f"{self.name}: HTTP {status}: {self._reason(response)}", status_code=status)
        if status >= 400:
            raise ToolError("permanent", f"{self.name}: HTTP {status}: {self._reason(response)}", status_code=status)
        if status >= 300:
            where = _scrub(response.headers.get("location", "nowhere"), self._secrets)[:REASON_CHARS]
            raise ToolError("permanent", f"{self.name}: HTTP {status} redirect to {where} (redirects are not followed)", status_code=status)
        return response

    def _reason(self, response: httpx.Response) -> str:
        return _reason(response, self._secrets)

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
        return self._json(response)

    def request_model(
        self,
        model: type[ModelT],
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> ModelT:
        """One attempt whose JSON must have the shape of `model`; anything else (no body, a list
        for an object, a missing field) is a permanent error naming the field and the HTTP status."""
        response = self.call(method, path, json_body=json_body, params=params, idempotency_key=idempotency_key)
        try:
            return model.model_validate(self._json(response))
        except ValidationError as exc:
            raise ToolError(
                "permanent",
                f"{self.name}: HTTP {response.status_code} with unexpected JSON: {first_problem(exc)}",
                status_code=response.status_code,
            ) from None

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            kind = response.headers.get("content-type", "unknown content type")
            raise ToolError(
                "permanent", f"{self.name}: HTTP {response.status_code} with a body that is not JSON ({kind})", status_code=response.status_code
            ) from None
