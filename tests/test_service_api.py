"""The real app under uvicorn on loopback: post a ticket, receive the signed webhook, read the
run; idempotency; approvals and escalations through the API; bad input gets problems, not 500s."""

from __future__ import annotations

import json
import time

import pytest
from sqlmodel import select

from agent.record import Run
from agent.runner import Runner
from agent.service.auth import COOKIE
from agent.service.models import WorkItem
from agent.service.queue import WorkQueue
from agent.tickets import Ticket
from policies.scan import scan_record
from tests.servers.base import LoopbackServer
from tests.servers.platform import PlatformHooks
from tests.service_support import approval_policy, serve
from tools.base import ToolContext
from tools.sandbox.models import SandboxComment, SandboxResetRequest
from tools.webhooks import EVENT_HEADER

pytestmark = pytest.mark.slow

RESET = {"text": "I forgot my password and can't log in, my email is jane@example.com", "requester_email": "jane@example.com", "ticket_id": "1003"}
MANAGER = {"text": "Please reset the password for li.wei@example.com, I am her manager.", "requester_email": "omar@example.com", "ticket_id": "1001"}
SECRET_ENV = "CASEPLAN_TEST_SERVICE_WEBHOOK_SECRET"


def test_post_ticket_signed_webhook_and_read_the_run(build, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "hook-secret")
    hooks = PlatformHooks("hook-secret")
    with LoopbackServer(hooks) as platform:
        runtime = build(CASEPLAN__SERVICE__WEBHOOK__URL=platform.url + "/hooks", CASEPLAN__SERVICE__WEBHOOK__SECRET_ENV=SECRET_ENV)
        with serve(runtime) as service, service.client("platform") as client:
            answer = client.post("/v1/tickets", json=RESET, headers={"Idempotency-Key": "t-1"}, params={"wait": 0})
            assert answer.status_code == 202, answer.text
            run_id = answer.json()["run_id"]
            assert answer.headers["location"] == f"/v1/runs/{run_id}"
            run = service.wait_for_run(run_id, ("completed", "escalated", "failed"))
            assert run["status"] == "completed" and run["template"] == "password_reset"
            events = client.get(f"/v1/runs/{run_id}/events").json()["events"]
            assert [e["kind"] for e in events][:2] == ["intake", "route"] and events[-1]["kind"] == "reply"
            assert "jane@example.com" not in json.dumps(events)  # the trace is masked
            with service.client("auditor") as auditor:
                assert auditor.get(f"/v1/runs/{run_id}/verify").json()["status"] == "verified"
                exported = auditor.get(f"/v1/runs/{run_id}/export").json()
                assert exported["id"] == run_id and len(exported["events"]) == len(events)
                metrics = auditor.get("/metrics").text
                assert 'caseplan_runs_total{outcome="completed",template="password_reset"} 1.0' in metrics
                auditor.cookies.set(COOKIE, service.session("auditor"))
                page = auditor.get(f"/console/runs/{run_id}", params={"verify": 1}).text
                assert 'id="verify-report"' in page and "verified" in page
            for _ in range(100):
                if hooks.accepted:
                    break
                time.sleep(0.05)
    [delivered] = hooks.accepted  # PlatformHooks refuses (401) anything not signed with the secret
    assert delivered["event"] == "run.finished"
    assert delivered["data"]["run_id"] == run_id and delivered["data"]["status"] == "completed"
    assert hooks.requests[0].headers[EVENT_HEADER.lower()] == "run.finished"
    assert hooks.requests[0].headers["idempotency-key"] == f"{run_id}:run.finished"


def test_idempotency_key_same_body_same_run_different_body_409(build):
    runtime = build()
    with serve(runtime, workers=0) as service, service.client("platform") as client:
        first = client.post("/v1/tickets", json=RESET, headers={"Idempotency-Key": "k-1"})
        again = client.post("/v1/tickets", json=RESET, headers={"Idempotency-Key": "k-1"})
        other = client.post("/v1/tickets", json={**RESET, "text": "something else"}, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == again.status_code == 202
        assert first.json()["run_id"] == again.json()["run_id"]
        assert other.status_code == 409 and other.headers["content-type"] == "application/problem+json"
        assert "different ticket" in other.json()["detail"]
        # Persisted before the answer, though no worker ran it.
        assert runtime.store.get_run(first.json()["run_id"]).status == "received"
        assert runtime.store.original_ticket(first.json()["run_id"])["text"] == RESET["text"]
        # A first request that died after storing its run but before queueing it: the retry queues it.
        with runtime.engine.begin() as conn:
            conn.execute(WorkItem.__table__.delete())
        assert client.post("/v1/tickets", json=RESET, headers={"Idempotency-Key": "k-1"}).json()["run_id"] == first.json()["run_id"]
        assert WorkQueue(runtime.engine, 30).depth()["queued"] == 1


def test_bad_input_gets_problem_documents_and_loses_nothing(build):
    runtime = build(CASEPLAN__SERVICE__MAX_BODY_BYTES="4096", CASEPLAN__SERVICE__RATE_LIMIT_BURST="40", CASEPLAN__SERVICE__RATE_LIMIT_PER_S="1")
    with serve(runtime, workers=0) as service, service.client("platform") as client:
        accepted = client.post("/v1/tickets", json=RESET, headers={"Idempotency-Key": "good"})
        assert accepted.status_code == 202
        key = {"Idempotency-Key": "bad"}
        cases = [
            (client.post("/v1/tickets", content=b'{"text": ', headers={**key, "Content-Type": "application/json"}), 400, "not valid JSON"),
            (client.post("/v1/tickets", content=b"text=hi", headers={**key, "Content-Type": "application/x-www-form-urlencoded"}), 415, "application/json"),
            (client.post("/v1/tickets", json={"text": "x" * 5000}, headers=key), 413, "limit is 4096"),
            (client.post("/v1/tickets", json={**RESET, "priority": "urgent"}, headers=key), 422, "priority"),
            (client.post("/v1/tickets", json={"text": 42}, headers=key), 422, "text"),
            (client.post("/v1/tickets", json={"subject": "no text"}, headers=key), 422, "text"),
            (client.post("/v1/tickets", json=RESET), 422, "Idempotency-Key"),
            (client.post("/v1/tickets", json={**RESET, "text": "nul\x00byte"}, headers=key), 422, "NUL"),
            (client.post("/v1/tickets", json={**RESET, "tags": ["a\x00b"]}, headers=key), 422, "NUL"),
            (client.post("/v1/tickets", json={**RESET, "customer_tier": "vip\x00"}, headers=key), 422, "NUL"),
            (client.post("/v1/tickets", json={**RESET, "tags": ["t" * 101]}, headers=key), 422, "at most 100 characters"),
            (client.get("/v1/runs/run_nope"), 404, "unknown run id"),
            (client.get("/v1/runs", params={"template": "a\x00b"}), 400, "NUL character"),
            (client.get("/v1/runs/run%00x"), 400, "NUL character"),
            (client.post("/v1/tickets", json=RESET, headers=key, params={"wiat": 5}), 422, "unknown query parameter(s): 'wiat'; this endpoint takes: wait"),
            (client.post("/v1/tickets", json=RESET, headers=key, params={"wait": "nan"}), 422, "finite number"),
        ]
        for response, status, words in cases:
            assert response.status_code == status, (status, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert words.lower() in response.json()["detail"].lower(), response.json()
        with service.client() as anonymous:
            assert anonymous.post("/v1/tickets", json=RESET, headers=key).status_code == 401
        with service.client(None, Authorization="Bearer cpk_forged") as forged:
            assert forged.get("/v1/runs/x").status_code == 401
        flood = [client.get(f"/v1/runs/{accepted.json()['run_id']}").status_code for _ in range(60)]
        assert 429 in flood and flood[0] == 200
        with service.client("agent") as other_key:  # the flood is limited per key
            assert other_key.get(f"/v1/runs/{accepted.json()['run_id']}").status_code == 200
            typo = other_key.get("/v1/runs", params={"statuss": "failed", "limit": 5})  # not every run, unfiltered
            assert typo.status_code == 422 and typo.json()["errors"] == [{"loc": ["query", "statuss"], "msg": "unknown query parameter", "type": "extra_forbidden"}]
            assert "takes: limit, status, template" in typo.json()["detail"]
            assert other_key.get("/v1/runs", params={"status": "failed", "limit": 5}).status_code == 200
            assert other_key.get("/v1/escalations", params={"offset": 0, "queue": "x"}).status_code == 200
        with service.client() as browser:  # console pages count against the same per-key limit
            browser.cookies.set(COOKIE, service.session("auditor"))
            pages = [browser.get("/console/runs").status_code for _ in range(60)]
            assert 429 in pages and pages[0] == 200
        with service.client() as anonymous:  # who may call comes first
            assert anonymous.get("/v1/runs", params={"statuss": "failed"}).status_code == 401
    with runtime.store.engine.connect() as conn:
        assert [row.id for row in conn.execute(select(Run.__table__.c.id))] == [accepted.json()["run_id"]]


def test_approval_through_the_api_resumes_the_run(build, tmp_path):
    runtime = build(CASEPLAN__POLICIES__FILES=approval_policy(tmp_path))
    with serve(runtime) as service, service.client("platform") as platform, service.client("agent") as agent:
        run_id = platform.post("/v1/tickets", json=RESET, headers={"Idempotency-Key": "a-1"}).json()["run_id"]
        assert service.wait_for_run(run_id, ("waiting_approval", "completed", "failed"))["status"] == "waiting_approval"
        with runtime.sandbox.session() as session:
            assert session.exec(select(SandboxResetRequest)).all() == []  # nothing happened before the answer
        with service.client("auditor") as auditor:  # nothing final to check yet: a status, not a 500
            waiting = auditor.get(f"/v1/runs/{run_id}/verify")
            assert waiting.status_code == 200 and waiting.json()["status"] == "in_progress", waiting.text
            auditor.cookies.set(COOKIE, service.session("auditor"))
            page = auditor.get(f"/console/runs/{run_id}", params={"verify": 1})
            assert page.status_code == 200 and "Verification: <strong>in_progress</strong>" in page.text
        [pending] = agent.get("/v1/approvals", params={"status": "pending"}).json()
        assert pending["run_id"] == run_id and pending["steps"][0]["tool"] == "password_reset"
        assert platform.post(f"/v1/approvals/{pending['id']}", json={"decision": "approve"}).status_code == 403
        assert agent.post(f"/v1/approvals/{pending['id']}", json={"decision": "maybe"}).status_code == 422
        as_form = agent.post(f"/v1/approvals/{pending['id']}", data={"decision": "approve"})
        assert as_form.status_code == 415 and "application/json" in as_form.json()["detail"]
        assert agent.post(f"/v1/approvals/{pending['id']}", json={"decision": "approve", "note": "n\x00"}).status_code == 422
        decided = agent.post(f"/v1/approvals/{pending['id']}", json={"decision": "approve", "note": "verified by phone"})
        assert decided.status_code == 202 and decided.json()["status"] == "approved"
        assert agent.post(f"/v1/approvals/{pending['id']}", json={"decision": "reject"}).status_code == 409
        assert service.wait_for_run(run_id, ("completed", "escalated", "failed"))["status"] == "completed"
        with runtime.sandbox.session() as session:
            assert len(session.exec(select(SandboxResetRequest)).all()) == 1


def test_an_approvers_note_is_masked_in_the_approvals_list_as_on_the_run_page(build, tmp_path):
    runtime = build(CASEPLAN__POLICIES__FILES=approval_policy(tmp_path))
    run_id = Runner(runtime).submit(Ticket.model_validate(RESET)).run_id
    note = "Called omar@example.com at +1 415 555 0199; card 4111 1111 1111 1111"
    with serve(runtime, workers=0) as service, service.client("agent") as agent, service.client("auditor") as auditor:
        [pending] = agent.get("/v1/approvals", params={"status": "pending"}).json()
        decided = agent.post(f"/v1/approvals/{pending['id']}", json={"decision": "reject", "note": note})
        assert decided.status_code == 202
        listed = {role: client.get("/v1/approvals").json() for role, client in (("agent", agent), ("auditor", auditor))}
        auditor.cookies.set(COOKIE, service.session("auditor"))
        run_page = auditor.get(f"/console/runs/{run_id}").text
    for shown in (json.dumps(decided.json()), json.dumps(listed), run_page):
        assert not any(value in shown for value in ("omar@example.com", "555 0199", "4111 1111 1111 1111")), shown
    [row] = listed["auditor"]
    assert row == listed["agent"][0] and row["status"] == "rejected" and row["note"].startswith("Called [email:")
    assert row["note"] in run_page  # the same masked note on both surfaces
    assert scan_record(runtime.engine) == []  # nor kept unmasked anywhere: the approval row, the queued answer


def test_escalation_claim_resolve_with_reply_reaches_the_ticket(build):
    runtime = build()
    with serve(runtime) as service, service.client("platform") as platform, service.client("agent") as agent:
        run_id = platform.post("/v1/tickets", json=MANAGER, headers={"Idempotency-Key": "e-1"}, params={"wait": 120}).json()["run_id"]
        assert service.wait_for_run(run_id, ("completed", "escalated", "failed"))["status"] == "escalated"
        [open_one] = agent.get("/v1/escalations", params={"status": "open"}).json()
        assert open_one["run_id"] == run_id and open_one["ticket_id"] == "1001"
        esc = open_one["id"]
        assert agent.post(f"/v1/escalations/{esc}/resolve", json={"resolution": "x"}).status_code == 409  # not claimed
        assert agent.post(f"/v1/escalations/{esc}/claim").json()["status"] == "claimed"
        with service.client("admin") as someone_else:
            taken = someone_else.post(f"/v1/escalations/{esc}/resolve", json={"resolution": "mine now"})
            assert taken.status_code == 409 and "claimed by test-agent" in taken.json()["detail"]
        assert agent.post(f"/v1/escalations/{esc}/resolve", json={"resolution": "   "}).status_code == 422  # blank is not a resolution
        assert agent.post(f"/v1/escalations/{esc}/resolve", content=b"resolution=x").status_code == 415
        with service.browser("agent") as browser:
            too_long = browser.post(f"/console/escalations/{esc}/resolve", data=service.form("agent", resolution="R" * 4001, reply="kept"))
            assert too_long.status_code == 422 and "at most 4000 characters" in too_long.text
            assert ">kept</textarea>" in too_long.text  # what the agent typed is still there
        assert agent.get(f"/v1/escalations/{esc}").json()["status"] == "claimed"  # the console refused it too
        reply = "We cannot reset another person's password; Li Wei can request it herself."
        resolved = agent.post(f"/v1/escalations/{esc}/resolve", json={"resolution": "explained policy", "reply": reply})
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["escalation"]["status"] == "resolved" and resolved.json()["ticket_update"]["ticket_id"] == "1001"
        assert agent.post(f"/v1/escalations/{esc}/release").status_code == 409
    with runtime.sandbox.session() as session:
        comments = session.exec(select(SandboxComment).where(SandboxComment.ticket_id == "1001")).all()
    assert [c.body for c in comments if c.public] == [reply]


def test_escalation_queue_pages_past_the_first_hundred(build):
    runtime = build()
    tool = runtime.registry.get("escalate_to_human")
    args = tool.input_model.model_validate({"reason": "customer_request", "summary": "wants a person"})
    created = [tool.invoke(args, ToolContext(f"run{i}", "escalate", f"key{i}")).escalation_id for i in range(105)]
    with serve(runtime, workers=0) as service, service.client("agent") as agent:
        first = [row["id"] for row in agent.get("/v1/escalations", params={"status": "open"}).json()]
        rest = [row["id"] for row in agent.get("/v1/escalations", params={"status": "open", "offset": 100}).json()]
        assert (len(first), len(rest)) == (100, 5) and sorted(first + rest) == sorted(created)
        assert agent.get("/v1/escalations", params={"limit": 501}).status_code == 422
        assert agent.get("/v1/escalations", params={"offset": -1}).status_code == 422
        agent.cookies.set(COOKIE, service.session("agent"))
        page_one = agent.get("/console/escalations", params={"status": "open"}).text
        assert 'id="older"' in page_one and 'id="newer"' not in page_one
        page_two = agent.get("/console/escalations", params={"status": "open", "page": "2"}).text
        assert 'id="newer"' in page_two and 'id="older"' not in page_two
        assert all(escalation_id in page_two for escalation_id in rest)
        assert agent.get("/console/escalations", params={"page": "²"}).status_code == 200  # not a page number: the first
        refused = agent.post(f"/console/escalations/{created[0]}/resolve", data=service.form("agent", resolution="done\x00"))
        assert refused.status_code == 400 and "NUL" in refused.text


def test_health_readiness_and_metrics(build):
    runtime = build()
    with serve(runtime, workers=0) as service, service.client() as anonymous, service.client("auditor") as auditor:
        assert anonymous.get("/healthz").json() == {"status": "ok", "checks": {}}
        ready = anonymous.get("/readyz").json()
        assert ready["status"] == "ok" and set(ready["checks"]) == {"database", "model", "retrieval"}
        assert anonymous.get("/metrics").status_code == 401
        text = auditor.get("/metrics").text
        assert "caseplan_queue_depth" in text and "caseplan_http_requests_total" in text
        assert anonymous.get("/docs").status_code == 200 and "/v1/tickets" in anonymous.get("/openapi.json").json()["paths"]
        for index in range(30):  # made-up methods: each a 405, none a metric series of its own
            assert anonymous.request(f"M{index}X" * 50, "/healthz").status_code == 405
        text = auditor.get("/metrics").text
        assert "M0X" not in text and 'caseplan_http_requests_total{method="other",route="/healthz",status="405"} 30.0' in text
