"""What agents type is stored masked, like the rest of the record: a resolution, the reply on the
trail and an approver's note. The reply still reaches the customer as typed, and `caseplan scan`
finds nothing unmasked in the record afterwards."""

from __future__ import annotations

import pytest
from sqlmodel import select

from agent.runner import Runner
from agent.service.desk import EscalationDesk
from policies.scan import scan_record
from tests.test_service_desk_admin import MANAGER
from tools.sandbox.models import SandboxComment

pytestmark = pytest.mark.slow

TYPED = "Called +1 415 555 0199 and confirmed li.wei@example.com; card 4111 1111 1111 1111 refunded"


def test_what_an_agent_types_is_masked_in_the_record_and_sent_as_typed(build):
    runtime = build()
    result = Runner(runtime).submit(MANAGER)
    desk = EscalationDesk(runtime)
    [row] = desk.list(status="open")
    desk.claim(row.id, "agent:ana")
    resolved, sent = desk.resolve(row.id, "agent:ana", TYPED, reply=f"Hello, {TYPED}.")
    assert sent is not None
    with runtime.sandbox.session() as session:
        comments = [c.body for c in session.exec(select(SandboxComment).where(SandboxComment.ticket_id == MANAGER.ticket_id))]
    assert f"Hello, {TYPED}." in comments  # the customer gets the reply as typed

    approval = runtime.store.request_approval(result.run_id, "0" * 64, [])
    decided = runtime.store.decide_approval(approval.run_id, False, "agent:ana", TYPED)
    stored = [resolved.resolution, str([m.detail for m in desk.history(row.id)]), decided.note, runtime.store.approvals(run_id=result.run_id)[0].note]
    for text in stored:
        assert "415 555 0199" not in text and "li.wei@example.com" not in text and "4111 1111 1111 1111" not in text, text
    assert scan_record(runtime.engine) == []
