"""Every endpoint against every role: 401 without a key, 403 for a role it must reject, and
never 401/403 for a role it admits. A new endpoint without a row here fails the test."""

from __future__ import annotations

import pytest

from agent.service.auth import COOKIE
from agent.service.models import ROLES
from tests.service_support import serve

pytestmark = pytest.mark.slow

PUBLIC = None
READERS = {"platform", "agent", "auditor", "admin"}
ALLOWED: dict[tuple[str, str], set[str] | None] = {
    ("POST", "/v1/tickets"): {"platform", "admin"},
    ("GET", "/v1/runs"): {"agent", "auditor", "admin"},
    ("GET", "/v1/runs/{run_id}"): READERS,
    ("GET", "/v1/runs/{run_id}/events"): READERS,
    ("GET", "/v1/runs/{run_id}/verify"): {"auditor", "admin"},
    ("GET", "/v1/runs/{run_id}/export"): {"auditor", "admin"},
    ("GET", "/v1/approvals"): {"agent", "auditor", "admin"},
    ("POST", "/v1/approvals/{approval_id}"): {"agent", "admin"},
    ("GET", "/v1/escalations"): {"agent", "admin"},
    ("GET", "/v1/escalations/{escalation_id}"): {"agent", "admin"},
    ("POST", "/v1/escalations/{escalation_id}/claim"): {"agent", "admin"},
    ("POST", "/v1/escalations/{escalation_id}/release"): {"agent", "admin"},
    ("POST", "/v1/escalations/{escalation_id}/resolve"): {"agent", "admin"},
    ("GET", "/metrics"): {"auditor", "admin"},
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
}
BODIES = {
    "/v1/tickets": {"text": "where is my order?", "requester_email": "omar@example.com"},
    "/v1/approvals/{approval_id}": {"decision": "approve"},
    "/v1/escalations/{escalation_id}/resolve": {"resolution": "done"},
}
CONSOLE = {"/console/escalations": {"agent", "admin"}, "/console/approvals": {"agent", "admin"}, "/console/runs": {"agent", "auditor", "admin"}}


def test_every_endpoint_admits_exactly_its_roles(runtime):
    with serve(runtime, workers=0) as service:
        with service.client() as anonymous:
            spec = anonymous.get("/openapi.json").json()
        documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
        assert documented == set(ALLOWED), documented ^ set(ALLOWED)
        seen = 0
        for (method, template), allowed in ALLOWED.items():
            path = template.replace("{run_id}", "run_none").replace("{approval_id}", "apr_none").replace("{escalation_id}", "esc_none")
            body = BODIES.get(template)
            for role in (None, *ROLES):
                headers = {"Idempotency-Key": f"roles-{role}"} if template == "/v1/tickets" else {}
                with service.client(role, **headers) as client:
                    status = client.request(method, path, json=body).status_code
                seen += 1
                if allowed is PUBLIC:
                    assert status == 200, (method, template, role, status)
                elif role is None:
                    assert status == 401, (method, template, status)
                elif role in allowed:
                    assert status not in (401, 403), (method, template, role, status)
                else:
                    assert status == 403, (method, template, role, status)
        assert seen == len(ALLOWED) * (len(ROLES) + 1)

        for page, allowed in CONSOLE.items():
            for role in ROLES:
                with service.client(None) as browser:
                    browser.cookies.set(COOKIE, service.session(role))
                    status = browser.get(page).status_code
                assert (status == 200) if role in allowed else (status == 403), (page, role, status)
        with service.client() as browser:
            assert browser.get("/console/approvals").status_code == 303  # to the login form
            refused = browser.post("/console/login", data={"key": service.keys["platform"]})
            assert refused.status_code == 401
