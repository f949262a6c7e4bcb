"""Escalation notices by signed webhook under respx: the queue row is written once, the notice
is retried by the executor under the escalation id, and every request is signed."""

from __future__ import annotations

import dataclasses

import pytest
import respx

from agent.db import make_engine
from agent.executor import idempotency_key
from plans.models import Step
from tests.adapter_support import Scenario, Sent, check_outcome, harness, scenarios, sent
from tools.adapters.platform_webhook import WebhookEscalationNotifier
from tools.base import derived_id
from tools.escalation import EscalateToHuman, EscalationQueue
from tools.webhooks import EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, verify

URL = "https://platform.acme.test/hooks/caseplan"
SECRET = "hook-secret"
ARGS = {
    "ticket_id": "1003",
    "reason": "tool_failure",
    "priority": "high",
    "summary": "Zendesk kept failing while updating the ticket.",
    "evidence": ["run_webhook#event-7"],
}
STEP = Step(id="hand_off", tool="escalate_to_human", args=ARGS)
RUN_ID = "run_webhook"


def _as_received(scenario: Scenario) -> Scenario:
    """A receiver's answer body is not read: any 2xx, JSON or not, means delivered."""
    if scenario.name in ("malformed JSON", "unexpected JSON"):
        return dataclasses.replace(scenario, status="succeeded", error_kind=None, error_status=None, error_text="")
    return scenario


@pytest.mark.parametrize(
    "scenario", [_as_received(s) for s in scenarios({"ok": True}, {"error": "no such hook"}, "HTTP 404: no such hook")], ids=lambda s: s.name
)
def test_escalation_notice(tmp_path, scenario: Scenario):
    engine = make_engine(f"sqlite:///{tmp_path / 'record.db'}")
    queue = EscalationQueue(engine)
    notifier = WebhookEscalationNotifier(WebhookSender(URL, SECRET, timeout_s=1), run_url="https://caseplan.acme.test/runs/{run_id}")
    test = harness(tmp_path, EscalateToHuman(queue, [notifier]), engine=engine)
    with respx.mock() as router:
        router.post(URL).mock(side_effect=list(scenario.answers))
        [result] = test.run(STEP, run_id=RUN_ID)
        requests = sent(router)
        raw = [(call.request.headers, call.request.content) for call in router.calls]

    check_outcome(result, scenario, test.sleeps)
    escalation_id = derived_id("esc", idempotency_key(RUN_ID, "hand_off", ARGS))
    body = {
        "event": "escalation.created",
        "data": {
            "escalation_id": escalation_id,
            "run_id": RUN_ID,
            "ticket_id": "1003",
            "reason": "tool_failure",
            "priority": "high",
            "queue": "general",
            "summary": ARGS["summary"],
            "links": {"run": f"https://caseplan.acme.test/runs/{RUN_ID}", "evidence": ["run_webhook#event-7"]},
        },
    }
    assert requests == [Sent("POST", "/hooks/caseplan", {}, body, None, escalation_id)] * scenario.attempts
    for headers, content in raw:
        assert headers[EVENT_HEADER] == "escalation.created" and headers["content-type"] == "application/json"
        assert verify(SECRET, headers[TIMESTAMP_HEADER], content, headers[SIGNATURE_HEADER])
    [row] = queue.list()
    assert row.id == escalation_id and row.reason == "tool_failure", "the queue row is written once, whatever the notice did"
    if result.ok:
        assert result.output == {"escalation_id": escalation_id, "queue": "general", "status": "open", "run_id": RUN_ID, "notified": ["webhook"]}
