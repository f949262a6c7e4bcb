"""The Zendesk-style tickets adapter under respx: every failure the issue names, driven through
the real executor's retry loop, asserting the exact requests sent."""

from __future__ import annotations

import base64

import httpx
import pytest
import respx

from agent.executor import idempotency_key
from plans.models import Step
from tests.adapter_support import Scenario, Sent, check_outcome, harness, scenarios, sent
from tools.adapters.zendesk import ZendeskHelpdesk, ZendeskTicketLookup, ZendeskTicketUpdate, zendesk_auth
from tools.http import HttpService

BASE = "https://acme.zendesk.test"
TICKET_PATH = "/api/v2/tickets/1003.json"
AUTH = "Basic " + base64.b64encode(b"agent@acme.test/token:zd-secret").decode()
TICKET = {
    "ticket": {
        "id": 1003,
        "subject": "Cannot sign in",
        "status": "hold",
        "requester_id": 501,
        "tags": ["login"],
        "updated_at": "2024-05-01T10:00:00Z",
        "priority": "normal",  # fields the adapter does not use are ignored
    },
    "users": [{"id": 501, "email": "Jane@Example.com", "name": "Jane Doe"}, {"id": 9, "email": "agent@acme.test"}],
}
UPDATED = {
    "ticket": {**TICKET["ticket"], "status": "pending"},
    "audit": {
        "id": 88,
        "events": [
            {"id": 1, "type": "Change", "field_name": "status", "value": "pending", "previous_value": "hold"},
            {"id": 77, "type": "Comment", "public": True, "body": "We sent a link."},
            {"id": 2, "type": "Notification", "subject": "ignored"},
        ],
    },
}
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
UPDATE_ARGS = {"ticket_id": "1003", "status": "pending", "public_reply": "We sent a link."}
LOOKUP = Step(id="lookup", tool="ticket_lookup", args={"ticket_id": "1003"})
UPDATE = Step(id="update", tool="ticket_update", args=UPDATE_ARGS)
RUN_ID = "run_adapter"
GET_SENT = Sent("GET", TICKET_PATH, {"include": "users"}, None, AUTH, None)


def helpdesk() -> ZendeskHelpdesk:
    return ZendeskHelpdesk(HttpService("zendesk", BASE, headers=zendesk_auth("zd-secret", "agent@acme.test"), timeout_s=1))


@pytest.mark.parametrize("scenario", scenarios(UPDATED, NOT_FOUND, "ticket 1003 not found"), ids=lambda s: s.name)
def test_ticket_update(tmp_path, scenario: Scenario):
    tool = ZendeskTicketUpdate(helpdesk())
    test = harness(tmp_path, tool)
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get(TICKET_PATH).mock(side_effect=lambda request: httpx.Response(200, json=TICKET))
        router.put(TICKET_PATH).mock(side_effect=list(scenario.answers))
        [result] = test.run(UPDATE, run_id=RUN_ID)
        requests = sent(router)

    check_outcome(result, scenario, test.sleeps)
    key = idempotency_key(RUN_ID, "update", UPDATE_ARGS)
    put = Sent("PUT", TICKET_PATH, {}, {"ticket": {"status": "pending", "comment": {"body": "We sent a link.", "public": True}}}, AUTH, key)
    assert requests == [GET_SENT, put] * scenario.attempts, "each attempt reads, then writes under the same key"
    if result.ok:
        assert result.output == {"ticket_id": "1003", "previous_status": "on_hold", "status": "pending", "comment_ids": ["77"]}
    assert test.ledger.get(key).status == ("succeeded" if result.ok else "failed")


@pytest.mark.parametrize("scenario", scenarios(TICKET, NOT_FOUND, "ticket 1003 not found"), ids=lambda s: s.name)
def test_ticket_lookup(tmp_path, scenario: Scenario):
    test = harness(tmp_path, ZendeskTicketLookup(helpdesk()))
    with respx.mock(base_url=BASE) as router:
        router.get(TICKET_PATH).mock(side_effect=list(scenario.answers))
        [result] = test.run(LOOKUP)
        requests = sent(router)

    check_outcome(result, scenario, test.sleeps)
    assert requests == [GET_SENT] * scenario.attempts
    if result.ok:
        assert result.output == {
            "ticket_id": "1003",
            "subject": "Cannot sign in",
            "status": "on_hold",
            "requester_email": "jane@example.com",
            "tags": ["login"],
            "updated_at": "2024-05-01T10:00:00Z",
        }


def test_reply_and_note_are_two_updates_each_under_its_own_key(tmp_path):
    args = {"ticket_id": "1003", "status": "solved", "public_reply": "All done.", "internal_note": "Customer confirmed."}
    test = harness(tmp_path, ZendeskTicketUpdate(helpdesk()))
    note = {"ticket": {**TICKET["ticket"], "status": "solved"}, "audit": {"events": [{"id": 79, "type": "Comment", "public": False}]}}
    solved = {
        "ticket": {**TICKET["ticket"], "status": "solved"},
        "audit": {"events": [{"id": 3, "type": "Change", "field_name": "status", "previous_value": "hold"}, {"id": 78, "type": "Comment"}]},
    }
    with respx.mock(base_url=BASE) as router:
        router.get(TICKET_PATH).mock(return_value=httpx.Response(200, json=TICKET))
        router.put(TICKET_PATH).mock(side_effect=[httpx.Response(200, json=solved), httpx.Response(200, json=note)])
        [result] = test.run(Step(id="close", tool="ticket_update", args=args), run_id=RUN_ID)
        requests = sent(router)
    key = idempotency_key(RUN_ID, "close", args)
    assert result.output == {"ticket_id": "1003", "previous_status": "on_hold", "status": "solved", "comment_ids": ["78", "79"]}
    assert requests[1:] == [
        Sent("PUT", TICKET_PATH, {}, {"ticket": {"status": "solved", "comment": {"body": "All done.", "public": True}}}, AUTH, key),
        Sent("PUT", TICKET_PATH, {}, {"ticket": {"comment": {"body": "Customer confirmed.", "public": False}}}, AUTH, f"{key}.2"),
    ]


@pytest.mark.parametrize(
    ("status", "args", "message"),
    [
        ("closed", {"ticket_id": "1003", "status": "open"}, "a closed ticket cannot change status"),
        ("closed", {"ticket_id": "1003", "internal_note": "x"}, "comments cannot be added"),
        ("solved", {"ticket_id": "1003", "status": "pending"}, "illegal status transition solved -> pending"),
    ],
)
def test_illegal_transitions_are_refused_before_any_write(tmp_path, status, args, message):
    test = harness(tmp_path, ZendeskTicketUpdate(helpdesk()))
    current = {**TICKET, "ticket": {**TICKET["ticket"], "status": status}}
    with respx.mock(base_url=BASE) as router:
        router.get(TICKET_PATH).mock(return_value=httpx.Response(200, json=current))
        [result] = test.run(Step(id="update", tool="ticket_update", args=args))
        requests = sent(router)
    assert result.status == "failed" and result.attempts == 1
    assert result.error["kind"] == "permanent" and result.error["status_code"] == 422 and message in result.error["message"]
    assert [s.method for s in requests] == ["GET"]


@pytest.mark.parametrize(
    ("response", "kind", "text"),
    [
        (httpx.Response(401, json={"error": "Couldn't authenticate you"}), "denied", "HTTP 401: Couldn't authenticate you"),
        (
            httpx.Response(502, text="<html><head><title>502</title></head><body><h1>Bad Gateway</h1></body></html>", headers={"Content-Type": "text/html"}),
            "transient",
            "HTTP 502: 502 Bad Gateway",
        ),
        (httpx.Response(200, json={"ticket": {**TICKET["ticket"], "status": "archived"}}), "permanent", "unexpected JSON: ticket.status"),
    ],
)
def test_auth_failures_html_pages_and_unknown_statuses_are_typed(tmp_path, response, kind, text):
    test = harness(tmp_path, ZendeskTicketLookup(helpdesk()))
    with respx.mock(base_url=BASE) as router:
        router.get(TICKET_PATH).mock(side_effect=lambda request: response)
        [result] = test.run(LOOKUP)
    assert result.status == "failed" and result.error["kind"] == kind and text in result.error["message"], result.error
    assert result.error["status_code"] == response.status_code
    assert "<" not in result.error["message"], "an HTML page is reduced to its text"


def test_bearer_auth_without_an_agent_email():
    assert zendesk_auth("oauth-token") == {"Authorization": "Bearer oauth-token"}
