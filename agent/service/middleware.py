"""ASGI middleware: a hard cap on request bodies (413 before the body is read, or as soon as
a chunked body passes the cap), NUL refused in the URL (no database stores it in text: a query
filter with one would fail inside PostgreSQL), and one structured log line plus a metric per
request."""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.service.metrics import Metrics
from agent.service.problems import PROBLEM_TYPE, TITLES, Problem

log = structlog.get_logger("caseplan.service")


async def _send_problem(send: Send, status: int, detail: str) -> None:
    body = Problem(title=TITLES.get(status, "Error"), status=status, detail=detail).model_dump_json(exclude_none=True).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", PROBLEM_TYPE.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string") or b""
        if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
            await _send_problem(send, 400, "the URL contains a NUL character")
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _send_problem(send, 400, "Content-Length is not a number")
                return
            if size > self.max_bytes:
                await _send_problem(send, 413, f"the body is {size} bytes; the limit is {self.max_bytes}")
                return
        await self._streamed(scope, receive, send)

    async def _streamed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count a body without a Content-Length as it arrives. Past the cap the 413 is sent from
        here and the app reads a disconnect: an exception raised into the app instead would reach
        FastAPI's body parsing, which answers any error there as 400 (or, through the console's
        http middleware, as an error group). Whatever the app answers after that is dropped."""
        seen, refused = 0, False

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    refused = True
                    await _send_problem(send, 413, f"the body is over the limit of {self.max_bytes} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited, unless_refused)
        except Exception:
            if not refused:
                raise  # after the 413, the app failing on its cut-off body is expected


# A metric label takes only these; any other method a client invents counts as "other", so
# requests with made-up methods cannot add series (memory) without bound.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.requests.labels(method, template, str(status["code"])).inc()
            log.info(
                "request",
                method=method,
                path=scope["path"],
                route=template,
                status=status["code"],
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
