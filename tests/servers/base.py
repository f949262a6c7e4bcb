"""A loopback HTTP server around a fake API: every request is logged, writes honour
Idempotency-Key like a real API (same key, same answer, applied once), and tests can inject
faults for upcoming requests (an answer instead of processing, a dropped connection after
processing, a stall longer than the client's timeout)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Reply:
    status: int
    body: Any = None  # dict/list: JSON; str/bytes: sent as is; None: no body
    headers: dict[str, str] = field(default_factory=dict)
    stream: Callable[[], Iterator[bytes]] | None = None  # instead of body: pieces sent as they come, until the client leaves

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), "application/json"
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("Content-Type", "text/plain")
        return self.body or b"", "application/octet-stream"


def flood(opening: bytes) -> Callable[[], Iterator[bytes]]:
    """A body that starts like JSON and never ends (for `Reply.stream`)."""

    def pieces() -> Iterator[bytes]:
        yield opening
        while True:
            yield b"a" * 65536

    return pieces


def drip(opening: bytes, piece: bytes = b"a") -> Callable[[], Iterator[bytes]]:
    """A body that starts like JSON, then sends one piece every 50 ms for ever."""

    def pieces() -> Iterator[bytes]:
        yield opening
        while True:
            time.sleep(0.05)
            yield piece

    return pieces


@dataclass
class Fault:
    """What happens to the next matching request instead of (or after) normal processing."""

    kind: Literal["reply", "drop_after_processing", "stall"]
    reply: Reply | None = None
    seconds: float = 0.0
    method: str | None = None  # only requests with this method; None: any


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any
    raw: bytes = b""
    replayed: bool = False  # answered from the idempotency record, not processed again


class FakeApi(ABC):
    """Subclasses implement `route`; `handle` adds auth, logging, faults and idempotency."""

    def __init__(self, auth: str | None = None) -> None:
        self.auth = auth
        self.requests: list[Seen] = []
        self.faults: list[Fault] = []
        self._answers: dict[str, tuple[str, Reply]] = {}
        self._lock = threading.Lock()

    @abstractmethod
    def route(self, seen: Seen) -> Reply:
        """The API's answer to one request (auth, faults and idempotency already handled)."""

    def writes(self) -> list[Seen]:
        return [seen for seen in self.requests if seen.method != "GET"]

    def _fault_for(self, seen: Seen) -> Fault | None:
        for index, fault in enumerate(self.faults):
            if fault.method in (None, seen.method):
                return self.faults.pop(index)
        return None

    def handle(self, seen: Seen) -> Reply | None:
        """The reply, or None to drop the connection without answering."""
        with self._lock:
            self.requests.append(seen)
            fault = self._fault_for(seen)
        if fault and fault.kind == "stall":
            time.sleep(fault.seconds)
            return Reply(504, {"error": "stalled"})
        if fault and fault.kind == "reply":
            return fault.reply
        if self.auth is not None and seen.headers.get("authorization") != self.auth:
            return Reply(401, {"error": "Couldn't authenticate you"})
        with self._lock:
            reply = self._idempotent(seen)
        return None if fault and fault.kind == "drop_after_processing" else reply

    def _idempotent(self, seen: Seen) -> Reply:
        key = seen.headers.get("idempotency-key")
        if seen.method == "GET" or not key:
            return self.route(seen)
        fingerprint = hashlib.sha256(json.dumps([seen.method, seen.path, seen.query, seen.body], sort_keys=True).encode()).hexdigest()
        if key in self._answers:
            stored_fingerprint, reply = self._answers[key]
            if stored_fingerprint != fingerprint:
                return Reply(422, {"error": "IdempotencyKeyReused", "description": "Idempotency key reused with a different request"})
            seen.replayed = True
            return reply
        reply = self.route(seen)
        if reply.status < 500:
            self._answers[key] = (fingerprint, reply)
        return reply


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = Seen(self.command, parts.path, dict(parse_qsl(parts.query)), headers, body, raw)
        reply = self.server.api.handle(seen)
        if reply is None:
            self.close_connection = True
            return
        if reply.stream is not None:
            self._stream(reply)
            return
        payload, content_type = reply.encoded()
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.headers.get("Content-Type", content_type))
        for name, value in reply.headers.items():
            if name != "Content-Type":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a stall past its timeout)

    def _stream(self, reply: Reply) -> None:
        """A body without a length, written piece by piece: a server that drips or never stops."""
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.headers.get("Content-Type", "application/json"))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for piece in reply.stream():
                self.wfile.write(piece)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: what a bounded client must do

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _serve  # noqa: N815 (http.server API)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeApi


class LoopbackServer:
    """Serve `api` on 127.0.0.1 (a free port) for the life of a `with` block."""

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = api
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
