"""The console as a browser uses it, over the real app on loopback: forms carry a token tied
to the session in the cookie (a page on another port of the same site cannot post them), the API
takes the cookie only for reads, pages are never cached or framed, errors are pages, tickets
show as written, and what people do with an escalation is kept as its trail."""

from __future__ import annotations

import html

import pytest
from sqlmodel import select

from agent.runner import Runner
from agent.service.console_forms import TOKEN_FIELD, form_token
from agent.tickets import Ticket
from tests.service_support import approval_policy, serve
from tools.sandbox.models import SandboxComment

pytestmark = pytest.mark.slow

MANAGER = Ticket(text="Please reset the password for li.wei@example.com, I am her manager.", requester_email="omar@example.com", ticket_id="1001")
RESET = Ticket(text="I forgot my password and can't log in, my email is jane@example.com", requester_email="jane@example.com", ticket_id="1003")


def test_forms_need_the_pages_token_and_the_api_takes_the_cookie_only_for_reads(build):
    runtime = build()
    run_id = Runner(runtime).submit(MANAGER).run_id
    with serve(runtime, workers=0) as service, service.browser("agent") as browser, service.client("agent") as api:
        [row] = [row for row in api.get("/v1/escalations").json() if row["run_id"] == run_id]
        page = browser.get(f"/console/escalations/{row['id']}")
        assert page.status_code == 200 and form_token(service.session("agent")) in page.text
        assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
        claim = f"/console/escalations/{row['id']}/claim"
        forged = browser.post(claim, data={})  # what a page elsewhere can send with the cookie
        assert forged.status_code == 403 and "did not come from a console page" in forged.text and forged.headers["content-type"].startswith("text/html")
        assert browser.post(claim, data=service.form("auditor")).status_code == 403  # another key's token
        assert browser.post(f"/v1/escalations/{row['id']}/claim").status_code == 401  # the cookie alone changes nothing
        assert api.get(f"/v1/escalations/{row['id']}").json()["status"] == "open"
        assert browser.post(claim, data=service.form("agent"), follow_redirects=False).status_code == 303
        assert api.get(f"/v1/escalations/{row['id']}").json()["status"] == "claimed"
        assert browser.get(f"/v1/runs/{run_id}").status_code == 200  # reads (the export link) still work
        with service.client() as stranger:
            elsewhere = stranger.post("/console/login", data={"key": service.keys["agent"]}, headers={"Origin": "http://127.0.0.1:1"})
            assert elsewhere.status_code == 403 and "caseplan_session" not in elsewhere.headers.get("set-cookie", "")
            malformed = stranger.post("/console/login", data={"key": service.keys["agent"]}, headers={"Origin": "http://[::1"})
            assert malformed.status_code == 403 and malformed.headers["content-type"].startswith("text/html") and "caseplan_session" not in malformed.headers.get("set-cookie", "")
            here = stranger.post("/console/login", data={"key": service.keys["agent"]}, headers={"Origin": service.url}, follow_redirects=False)
            assert here.status_code == 303 and "caseplan_session=" in here.headers["set-cookie"]
        missing = browser.get("/console/runs/run_nope")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html") and "unknown run id" in missing.text


def test_the_cookie_holds_a_session_that_logging_out_or_revoking_the_key_ends(build):
    """The cookie was the API key itself: logging out deleted it in one browser and nowhere else,
    and whoever copied it held the key for good."""
    from datetime import timedelta

    from agent.service.auth import COOKIE
    from agent.service.keys import KeyStore

    runtime = build()
    with serve(runtime, workers=0) as service, service.client() as browser:
        logged_in = browser.post("/console/login", data={"key": service.keys["agent"]}, headers={"Origin": service.url}, follow_redirects=False)
        token = logged_in.cookies[COOKIE]
        assert token.startswith("cps_") and service.keys["agent"] not in logged_in.headers["set-cookie"]
        assert browser.get("/console/escalations").status_code == 200
        copied = service.client(None)  # a copy of the cookie, taken before logging out
        copied.cookies.set(COOKIE, token)
        assert copied.get("/console/escalations").status_code == 200
        out = browser.post("/console/logout", data={TOKEN_FIELD: form_token(token)}, follow_redirects=False)
        assert out.status_code == 303
        assert copied.get("/console/escalations", follow_redirects=False).status_code == 303  # to the login form: the session is gone
        assert copied.get("/v1/escalations").status_code == 401
        raw = service.client(None)  # the API key itself in the cookie is not a session
        raw.cookies.set(COOKIE, service.keys["agent"])
        assert raw.get("/console/escalations", follow_redirects=False).status_code == 303
        keys = KeyStore(runtime.engine)
        auditor = keys.verify(service.keys["auditor"])
        live, expired = keys.open_session(auditor, timedelta(hours=1)), keys.open_session(auditor, timedelta(seconds=-1))
        for session, status in ((live, 200), (expired, 303)):
            visitor = service.client(None)
            visitor.cookies.set(COOKIE, session)
            assert visitor.get("/console/runs", follow_redirects=False).status_code == status
        keys.revoke(auditor.id)
        visitor.cookies.set(COOKIE, live)
        assert visitor.get("/console/runs", follow_redirects=False).status_code == 303  # a revoked key's sessions end with it


def test_the_agent_sees_the_ticket_as_written_and_the_trail_keeps_who_told_the_customer_what(build):
    runtime = build()
    text = "No puedo iniciar sesión — 日本語 & <3, my ticket is 1003"
    run_id = Runner(runtime).submit(Ticket(text=text, requester_email="jane@example.com", ticket_id="1003")).run_id
    reply = "お問い合わせありがとうございます。" * 110  # 1,870 characters: 9 bytes each once URL-encoded
    with serve(runtime, workers=0) as service, service.browser("agent") as browser, service.client("agent") as api:
        [row] = [row for row in api.get("/v1/escalations").json() if row["run_id"] == run_id]
        here = f"/console/escalations/{row['id']}"
        page = browser.get(here).text
        assert "sesión — 日本語 &amp; &lt;3" in page and "\\u00f3" not in page and "jane@example.com" in page  # the original, escaped
        browser.post(f"{here}/claim", data=service.form("agent"))
        browser.post(f"{here}/release", data=service.form("agent"))
        browser.post(f"{here}/claim", data=service.form("agent"))
        done = browser.post(f"{here}/resolve", data=service.form("agent", resolution="answered in Japanese", reply=reply), follow_redirects=False)
        assert done.status_code == 303, done.text
        trail = browser.get(here).text
        assert trail.count("test-agent") >= 4 and "released" in trail and f"reply: {reply}" in trail
        with service.browser("auditor") as auditor:
            run_page = auditor.get(f"/console/runs/{run_id}").text
            assert "resolved: answered in Japanese" in run_page and "released" in run_page
            assert f'href="/console/escalations/{row["id"]}"' not in run_page  # auditors have no escalation page
    with runtime.sandbox.session() as session:
        assert [c.body for c in session.exec(select(SandboxComment).where(SandboxComment.ticket_id == "1003")).all() if c.public][-1] == reply


def test_a_run_waiting_for_approval_shows_its_route_and_the_approver_sees_the_ticket(build, tmp_path):
    runtime = build(CASEPLAN__POLICIES__FILES=approval_policy(tmp_path))
    result = Runner(runtime).submit(RESET)
    assert result.status == "waiting_approval"
    with serve(runtime, workers=0) as service, service.browser("agent") as browser:
        run_page = html.unescape(browser.get(f"/console/runs/{result.run_id}").text)
        assert "· template password_reset ·" in run_page and '"confidence": ' in run_page and "<pre>null</pre>" not in run_page
        approvals = browser.get("/console/approvals").text
        assert "I forgot my password and can&#39;t log in" in approvals and "#1003" in approvals
        [approval] = runtime.store.approvals(status="pending")
        long_note = browser.post(f"/console/approvals/{approval.id}", data=service.form("agent", decision="approve", note="n" * 2001), follow_redirects=True)
        assert "at most 2000 are kept. Nothing was decided." in long_note.text
        assert runtime.store.approvals(status="pending") != []
        bogus = browser.get("/console/escalations", params={"status": "bogus"}).text
        assert "There is no status &#39;bogus&#39;; showing open escalations." in bogus


def test_the_runs_page_pages_past_the_newest_hundred(build):
    runtime = build()
    created = [runtime.store.create_run({"text": f"ticket {index}"}, {"code": "test"}).id for index in range(101)]
    with serve(runtime, workers=0) as service, service.browser("auditor") as browser:
        first = browser.get("/console/runs").text
        assert 'id="older"' in first and 'id="newer"' not in first
        second = browser.get("/console/runs", params={"page": "2"}).text
        assert 'id="newer"' in second and 'id="older"' not in second
        assert sum(run_id in first for run_id in created) == 100 and sum(run_id in second for run_id in created) == 1


def test_pages_show_only_messages_the_console_wrote(build):
    runtime = build()
    run_id = Runner(runtime).submit(MANAGER).run_id
    with serve(runtime, workers=0) as service, service.browser("agent") as browser, service.client("agent") as api:
        [row] = [row for row in api.get("/v1/escalations").json() if row["run_id"] == run_id]
        here = f"/console/escalations/{row['id']}"
        spoof = "Security team: this reset is verified, approve it now"
        assert spoof not in browser.get(here, params={"flash": spoof}).text  # a link from elsewhere
        assert spoof not in browser.get(here, params={"flash": spoof, "sig": "0" * 64}).text
        claimed = browser.post(f"{here}/claim", data=service.form("agent"), follow_redirects=False)
        assert "Claimed." in browser.get(claimed.headers["location"]).text
        with service.browser("auditor") as other:  # another key's signature does not carry over
            assert "Claimed." not in other.get(f"/console/runs/{run_id}?{claimed.headers['location'].split('?')[1]}").text
