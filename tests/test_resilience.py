"""The one retry loop, the HTTP error mapping, and signed webhooks against a real loopback server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import respx

from tools.base import ToolError
from tools.http import HttpService
from tools.resilience import RetryPolicy, backoff_delay, run_with_retries
from tools.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, verify


def test_backoff_is_jittered_exponential_capped_and_honours_retry_after():
    policy = RetryPolicy(backoff_base_s=1, backoff_max_s=5, retry_after_max_s=20)
    assert 0.5 <= backoff_delay(1, policy) <= 1
    assert 2 <= backoff_delay(3, policy) <= 4
    assert 2.5 <= backoff_delay(10, policy) <= 5
    assert backoff_delay(1, policy, retry_after=7) == 7
    assert backoff_delay(1, policy, retry_after=999) == 20


def test_retries_only_transient_errors():
    sleeps: list[float] = []
    outcomes = [ToolError("transient", "x", retry_after=3), ToolError("transient", "y"), "ok"]

    def call(attempt: int) -> str:
        outcome = outcomes[attempt - 1]
        if isinstance(outcome, ToolError):
            raise outcome
        return outcome

    assert run_with_retries(call, RetryPolicy(max_attempts=3), sleep=sleeps.append) == ("ok", 3)
    assert sleeps[0] == 3
    with pytest.raises(ToolError) as info:
        run_with_retries(lambda _: (_ for _ in ()).throw(ToolError("permanent", "no")), RetryPolicy(max_attempts=5), sleep=sleeps.append)
    assert info.value.attempts == 1


def test_a_retry_after_beyond_the_cap_gives_up_at_once_instead_of_asking_again_too_early():
    sleeps: list[float] = []
    busy = ToolError("transient", "HTTP 429 from zendesk", status_code=429, retry_after=3600)
    with pytest.raises(ToolError) as info:
        run_with_retries(lambda _: (_ for _ in ()).throw(busy), RetryPolicy(max_attempts=5, retry_after_max_s=30), sleep=sleeps.append)
    assert sleeps == [] and info.value.attempts == 1
    assert str(info.value) == "HTTP 429 from zendesk (the service asks to wait 3600s, more than the 30s a retry waits)"


@respx.mock
@pytest.mark.parametrize(
    ("response", "kind", "retry_after"),
    [
        (httpx.Response(429, headers={"Retry-After": "2"}), "transient", 2.0),
        (httpx.Response(503, text="down"), "transient", None),
        (httpx.Response(401), "denied", None),
        (httpx.Response(404, json={"error": "RecordNotFound"}), "permanent", None),
        (httpx.Response(200, text="<html>oops</html>", headers={"content-type": "text/html"}), "permanent", None),
    ],
)
def test_http_failures_map_to_typed_errors(response, kind, retry_after):
    respx.get("https://api.example.test/thing").mock(return_value=response)
    service = HttpService("demo", "https://api.example.test")
    with pytest.raises(ToolError) as info:
        service.request("GET", "/thing")
    assert info.value.kind == kind and info.value.status_code == response.status_code
    assert info.value.retry_after == retry_after


@respx.mock
def test_http_timeouts_and_connection_errors_are_transient():
    respx.get("https://api.example.test/slow").mock(side_effect=httpx.ReadTimeout("slow"))
    respx.get("https://api.example.test/down").mock(side_effect=httpx.ConnectError("refused"))
    service = HttpService("demo", "https://api.example.test")
    for path in ("/slow", "/down"):
        with pytest.raises(ToolError) as info:
            service.request("GET", path)
        assert info.value.kind == "transient"


class Receiver(BaseHTTPRequestHandler):
    """A platform endpoint on loopback: fails the first `failures` posts, records the rest."""

    failures = 0
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Receiver.failures > 0:
            Receiver.failures -= 1
            self.send_response(503)
            self.end_headers()
            return
        Receiver.received.append({"headers": dict(self.headers), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks"
    server.shutdown()


def test_webhook_is_signed_retried_and_verifiable(receiver):
    Receiver.failures = 2
    sender = WebhookSender(receiver, "s3cret", sleep=lambda _: None)
    delivery = sender.send("escalation.created", {"escalation_id": "esc_1"}, idempotency_key="k1")
    assert delivery.status == "delivered" and delivery.attempts == 3
    [got] = Receiver.received
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert json.loads(got["body"]) == {"event": "escalation.created", "data": {"escalation_id": "esc_1"}}
    assert headers["idempotency-key"] == "k1"
    assert verify("s3cret", headers[TIMESTAMP_HEADER.lower()], got["body"], headers[SIGNATURE_HEADER.lower()])
    assert not verify("wrong", headers[TIMESTAMP_HEADER.lower()], got["body"], headers[SIGNATURE_HEADER.lower()])
    assert not verify("s3cret", "0", got["body"], headers[SIGNATURE_HEADER.lower()])


def test_webhook_gives_up_cleanly_when_the_receiver_is_down():
    sender = WebhookSender("http://127.0.0.1:9/none", "s", policy=RetryPolicy(max_attempts=2), sleep=lambda _: None)
    delivery = sender.send("run.completed", {}, idempotency_key="k")
    assert delivery.status == "failed" and delivery.attempts == 2 and "connection failed" in delivery.error
