"""Every outbound response is read within the call's timeout and a size bound, against real
servers on loopback: one that sends a body without end, one that drips a byte at a time (each
read within httpx's timeout, the whole never done), and a normal gzip-encoded answer that must
still come through. Without the bounds the first fills memory and the second never returns."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from agent.models.api import ApiModel, ApiUnavailable
from agent.settings import ApiModelSettings
from tests.liveness import finishes
from tests.servers.base import FakeApi, Fault, LoopbackServer, Reply, Seen, drip, flood
from tools.base import ToolError
from tools.http import MAX_RESPONSE_BYTES, HttpService


class Answer(BaseModel):
    template: str


class _Api(FakeApi):
    """Answers what the test queues as faults; anything else is a 404."""

    def route(self, seen: Seen) -> Reply:
        return Reply(404, {"error": "nothing here"})


_flood = flood(b'{"ticket": {"subject": "')
_drip = drip(b'{"ticket": {"subject": "')


@pytest.mark.parametrize(
    ("stream", "kind", "message"),
    [(_flood, "permanent", f"larger than {MAX_RESPONSE_BYTES:,} bytes"), (_drip, "transient", "timed out: no complete response within 0.5s")],
    ids=["endless body", "dripping body"],
)
def test_an_adapter_stops_reading_a_body_that_is_too_large_or_too_slow(stream, kind, message):
    api = _Api()
    with LoopbackServer(api) as server:
        http = HttpService("zendesk", server.url, timeout_s=0.5)
        api.faults.append(Fault("reply", Reply(200, stream=stream)))
        error = finishes(lambda: http.request("GET", "/api/v2/tickets/1.json"))
        assert isinstance(error, ToolError), error
        assert error.kind == kind and message in str(error)
        api.faults.append(Fault("reply", Reply(200, {"ticket": {"id": 1}})))
        assert http.request("GET", "/api/v2/tickets/1.json") == {"ticket": {"id": 1}}  # the next call is served normally


def test_a_gzip_encoded_answer_is_decoded_once_and_parsed():
    api = _Api()
    body = gzip.compress(json.dumps({"ticket": {"id": 7, "subject": "Ok"}}).encode())
    with LoopbackServer(api) as server:
        http = HttpService("zendesk", server.url, timeout_s=2)
        api.faults.append(Fault("reply", Reply(200, body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})))
        assert http.request("GET", "/api/v2/tickets/7.json") == {"ticket": {"id": 7, "subject": "Ok"}}
        api.faults.append(Fault("reply", Reply(200, b"not gzip at all", headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})))
        with pytest.raises(ToolError, match="could not be decoded") as caught:
            http.request("GET", "/api/v2/tickets/7.json")
        assert caught.value.kind == "permanent"


def test_the_api_model_gives_up_on_an_endless_answer_at_once_and_on_a_dripping_one_after_its_attempts():
    api = _Api()
    with LoopbackServer(api) as server:
        settings = ApiModelSettings(base_url=server.url, model="gpt-test", max_attempts=2, timeout_s=0.5, backoff_base_s=0.01)
        model = ApiModel(settings, sleep=lambda _: None, env={})

        def ask() -> Any:
            return model.complete("route", "Pick a template.", "hi", Answer, model.budget())

        api.faults.append(Fault("reply", Reply(200, stream=_flood)))
        error = finishes(ask)
        assert isinstance(error, ApiUnavailable) and "larger than" in str(error)
        assert len(api.requests) == 1  # as large next time: not retried
        api.faults += [Fault("reply", Reply(200, stream=_drip)), Fault("reply", Reply(200, stream=_drip))]
        error = finishes(ask)
        assert isinstance(error, ApiUnavailable) and "no complete response within 0.5s after 2 attempts" in str(error)
        assert len(api.requests) == 3


@contextlib.contextmanager
def header_dripping_server() -> Iterator[str]:
    """A raw socket server that sends its status line and headers a byte every 50 ms, for ever."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip_headers(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: a"):
                if stop.is_set():
                    return
                try:
                    conn.send(bytes([byte]) if byte != 13 else b"a")
                except OSError:
                    return
                time.sleep(0.05)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=drip_headers, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def test_a_server_that_drips_its_headers_is_cut_off_at_the_whole_call_deadline():
    """httpx's read timeout restarts with every byte; the call's deadline does not."""
    with header_dripping_server() as url:
        http = HttpService("zendesk", url, timeout_s=0.5)
        started = time.monotonic()
        error = finishes(lambda: http.request("GET", "/api/v2/tickets/1.json"))
        assert isinstance(error, ToolError), error
        assert error.kind == "transient" and "timed out: no complete response within 0.5s" in error.message
        assert time.monotonic() - started < 5  # not the 10 s `finishes` allows


def test_a_redirect_is_an_error_naming_where_it_pointed_not_a_success():
    api = _Api()
    with LoopbackServer(api) as server:
        http = HttpService("okta", server.url, timeout_s=2)
        api.faults.append(Fault("reply", Reply(302, b"", headers={"Location": "https://sso.example.com/login"})))
        with pytest.raises(ToolError, match="HTTP 302 redirect to https://sso.example.com/login") as caught:
            http.request("POST", "/api/v1/users/u1/lifecycle/reset_password")
        assert caught.value.kind == "permanent" and [seen.path for seen in api.requests] == ["/api/v1/users/u1/lifecycle/reset_password"]


@pytest.mark.parametrize(
    "reply",
    [Reply(401, {"errorSummary": "Invalid token: SSWS okta-secret-token-456"}), Reply(500, "<html><body>bad SSWS okta-secret-token-456</body></html>")],
    ids=["JSON error", "HTML page"],
)
def test_a_credential_the_platform_echoes_back_is_never_quoted_in_the_error(reply):
    """Errors land in the run record, the escalation queue and webhook notices."""
    api = _Api()
    with LoopbackServer(api) as server:
        http = HttpService("okta", server.url, headers={"Authorization": "SSWS okta-secret-token-456"}, timeout_s=2)
        api.faults.append(Fault("reply", reply))
        with pytest.raises(ToolError) as caught:
            http.request("GET", "/api/v1/users/u1")
        assert "okta-secret-token-456" not in caught.value.message and "[credential]" in caught.value.message
