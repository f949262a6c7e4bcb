"""An escalation whose holder is gone (a key revoked mid-claim) is not stuck for ever: an admin
takes it back to the queue, through the API or the console, and the trail names the admin and
the holder. A `resolving` one is taken back only once its request is past the resolve lease, so
a reply still being sent is never raced by a second one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agent.runner import Runner
from agent.service.auth import actor
from agent.service.desk import RESOLVE_LEASE, EscalationDesk
from agent.service.keys import KeyStore
from agent.tickets import Ticket
from tests.service_support import Service, serve
from tools.escalation import Escalation

pytestmark = pytest.mark.slow

MANAGER = Ticket(text="Please reset the password for li.wei@example.com, I am her manager.", requester_email="omar@example.com", ticket_id="1001")


def _claimed_by_a_revoked_key(service: Service) -> tuple[str, str]:
    """The open escalation, claimed by an agent whose key is then revoked; (escalation id, holder)."""
    keys = KeyStore(service.runtime.engine)
    departed, secret = keys.create("agent", "Departed Agent")
    with service.client(None, Authorization=f"Bearer {secret}") as gone:
        [row] = gone.get("/v1/escalations", params={"status": "open"}).json()
        assert gone.post(f"/v1/escalations/{row['id']}/claim").status_code == 200
    keys.revoke(departed.id)
    return row["id"], actor(departed)


def _moves(service: Service, escalation_id: str) -> list[tuple[str, str, dict]]:
    return [(move.action, move.actor, move.detail) for move in EscalationDesk(service.runtime).history(escalation_id)]


def _admin(service: Service) -> str:
    return actor(KeyStore(service.runtime.engine).verify(service.keys["admin"]))


def test_an_admin_takes_back_an_escalation_held_by_a_revoked_key_and_the_trail_says_so(build):
    runtime = build()
    Runner(runtime).submit(MANAGER)
    with serve(runtime, workers=0) as service, service.client("agent") as agent, service.client("admin") as admin:
        esc, holder = _claimed_by_a_revoked_key(service)
        refused = agent.post(f"/v1/escalations/{esc}/release")
        assert refused.status_code == 409 and "claimed by Departed Agent" in refused.json()["detail"]  # not an agent's to take
        taken = admin.post(f"/v1/escalations/{esc}/release")
        assert taken.status_code == 200, taken.text
        assert (taken.json()["status"], taken.json()["claimed_by"]) == ("open", None)
        assert _moves(service, esc)[-1] == ("taken_back", _admin(service), {"from": holder, "was": "claimed"})
        assert admin.post(f"/v1/escalations/{esc}/release").status_code == 409  # nothing left to take back
        assert agent.post(f"/v1/escalations/{esc}/claim").status_code == 200
        resolved = agent.post(f"/v1/escalations/{esc}/resolve", json={"resolution": "answered", "reply": "Li Wei can reset it herself."})
        assert resolved.status_code == 200 and resolved.json()["escalation"]["status"] == "resolved"


def test_a_resolve_left_behind_by_a_revoked_holder_is_taken_back_only_after_the_lease(build):
    runtime = build()
    Runner(runtime).submit(MANAGER)
    with serve(runtime, workers=0) as service, service.client("admin") as admin:
        esc, holder = _claimed_by_a_revoked_key(service)
        table = Escalation.__table__
        with runtime.engine.begin() as conn:  # the holder's resolve request died while sending the reply
            conn.execute(table.update().where(table.c.id == esc).values(status="resolving", resolution="first try"))
        early = admin.post(f"/v1/escalations/{esc}/release")
        assert early.status_code == 409 and "being resolved by Departed Agent" in early.json()["detail"]  # it may still be sending
        stale = datetime.now(UTC) - RESOLVE_LEASE - timedelta(seconds=1)
        with runtime.engine.begin() as conn:
            conn.execute(table.update().where(table.c.id == esc).values(updated_at=stale))
        taken = admin.post(f"/v1/escalations/{esc}/release").json()
        assert (taken["status"], taken["claimed_by"], taken["resolution"]) == ("open", None, None)
        assert _moves(service, esc)[-1] == ("taken_back", _admin(service), {"from": holder, "was": "resolving"})


def test_the_console_offers_an_admin_the_take_back_and_shows_it_in_the_trail(build):
    runtime = build()
    Runner(runtime).submit(MANAGER)
    with serve(runtime, workers=0) as service, service.browser("admin") as browser:
        esc, _ = _claimed_by_a_revoked_key(service)
        here = f"/console/escalations/{esc}"
        assert f'action="{here}/release"' in browser.get(here).text
        with service.browser("agent") as agent:
            assert "/release" not in agent.get(here).text  # an agent cannot take it back
        done = browser.post(f"{here}/release", data=service.form("admin"), follow_redirects=False)
        assert done.status_code == 303
        page = browser.get(here).text
        assert 'id="escalation-status">open<' in page and "taken back from Departed Agent" in page
