"""A body over `service.max_body_bytes` sent chunked (no Content-Length, so nothing to refuse it
on up front) is cut off as it streams and answered 413, on every endpoint that takes a body and
on the console's forms, over the real server on loopback; nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlmodel import select

from agent.record import Run
from tests.service_support import serve

pytestmark = pytest.mark.slow

LIMIT = 4096


def _chunked(field: str) -> Iterator[bytes]:
    """A JSON body of about ten times the limit, sent in pieces of 1,000 bytes."""
    yield f'{{"{field}": "'.encode()
    yield from (b"a" * 1000 for _ in range(40))
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_413_on_every_endpoint_that_takes_one(build):
    runtime = build(CASEPLAN__SERVICE__MAX_BODY_BYTES=str(LIMIT))
    posts = [
        ("platform", "/v1/tickets", "text", {"Idempotency-Key": "chunked"}),
        ("agent", "/v1/approvals/apr_none", "note", {}),
        ("agent", "/v1/escalations/esc_none/resolve", "resolution", {}),
    ]
    with serve(runtime, workers=0) as service:
        for role, path, field, headers in posts:
            with service.client(role, **headers) as client:
                answer = client.post(path, content=_chunked(field), headers={"Content-Type": "application/json"})
            assert answer.status_code == 413, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert f"over the limit of {LIMIT} bytes" in answer.json()["detail"]
        with service.browser("agent") as browser:
            form = browser.post("/console/escalations/esc_none/resolve", content=_chunked("resolution"), headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert form.status_code == 413, form.text
        with service.client("platform", **{"Idempotency-Key": "after"}) as client:  # the server still answers
            assert client.post("/v1/tickets", json={"text": "Where is my parcel?"}).status_code == 202
    with runtime.engine.connect() as conn:
        assert len(conn.execute(select(Run.__table__.c.id)).all()) == 1
