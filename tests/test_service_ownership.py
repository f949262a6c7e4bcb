"""Whose run is it: a platform key reads only the runs of tickets it posted (run ids can be worked
out from a key id and an Idempotency-Key), and the key that posted a ticket cannot approve its
own run, even an admin key that may do both."""

from __future__ import annotations

import pytest

from agent.service.keys import KeyStore
from tests.service_support import approval_policy, serve
from tests.test_service_api import RESET

pytestmark = pytest.mark.slow


def test_a_platform_key_reads_only_its_own_runs(build):
    runtime = build()
    with serve(runtime, workers=0) as service, service.client("platform", **{"Idempotency-Key": "own-1"}) as poster:
        run_id = poster.post("/v1/tickets", json=RESET).json()["run_id"]
        _, other_secret = KeyStore(runtime.engine).create("platform", "another integration")
        with service.client(None, Authorization=f"Bearer {other_secret}") as other, service.client("agent") as agent:
            for path in (f"/v1/runs/{run_id}", f"/v1/runs/{run_id}/events"):
                assert poster.get(path).status_code == 200, path
                assert agent.get(path).status_code == 200, path
                refused = other.get(path)
                assert refused.status_code == 404 and refused.json()["detail"] == f"unknown run id {run_id!r}", path


def test_the_key_that_posted_a_ticket_cannot_approve_its_run(build, tmp_path):
    runtime = build(CASEPLAN__POLICIES__FILES=approval_policy(tmp_path))
    with serve(runtime, workers=1) as service, service.client("admin", **{"Idempotency-Key": "self-1"}) as admin:
        run_id = admin.post("/v1/tickets", json=RESET).json()["run_id"]
        assert service.wait_for_run(run_id, ("waiting_approval",))["status"] == "waiting_approval"
        [pending] = admin.get("/v1/approvals", params={"status": "pending"}).json()
        refused = admin.post(f"/v1/approvals/{pending['id']}", json={"decision": "approve"})
        assert refused.status_code == 403 and "a ticket this key posted" in refused.json()["detail"]
        assert admin.get("/v1/approvals", params={"status": "pending"}).json() == [pending]  # nothing decided
        with service.client("agent") as agent:  # another person may
            assert agent.post(f"/v1/approvals/{pending['id']}", json={"decision": "approve"}).status_code == 202
