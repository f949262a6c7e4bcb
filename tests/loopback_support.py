"""Runtimes wired to fake platforms on loopback through a config file, as a user would wire
them: the `tools:` section names the adapters and the environment variables for secrets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from agent.db import make_engine
from agent.routing import RouteDecision
from agent.runtime import Runtime
from agent.settings import load_settings
from agent.tickets import Ticket
from agent.tooling import build_registry, open_knowledge_index
from tests.servers.okta import OktaApi
from tests.servers.zendesk import ZendeskApi
from tools.base import Tool
from tools.sandbox.seed import seed_demo
from tools.sandbox.store import SandboxStore

ZENDESK_TOKEN_ENV = "CASEPLAN_TEST_ZENDESK_TOKEN"
OKTA_TOKEN_ENV = "CASEPLAN_TEST_OKTA_TOKEN"
WEBHOOK_SECRET_ENV = "CASEPLAN_TEST_WEBHOOK_SECRET"
SECRETS = {ZENDESK_TOKEN_ENV: "zd-secret", OKTA_TOKEN_ENV: "okta-secret", WEBHOOK_SECRET_ENV: "hook-secret"}
ZENDESK_AUTH = "Basic " + base64.b64encode(b"agent@acme.test/token:zd-secret").decode()
OKTA_AUTH = "SSWS okta-secret"


def zendesk_api() -> ZendeskApi:
    """Jane's open ticket 1003 and a closed one, behind the agent's API token."""
    api = ZendeskApi(auth=ZENDESK_AUTH)
    api.add_user(501, "jane@example.com", "Jane Doe")
    api.add_user(502, "omar@example.com", "Omar Haddad")
    api.add_ticket(1003, "Cannot sign in", "open", 501, ["login"])
    api.add_ticket(1004, "Old request", "closed", 501)
    api.add_ticket(1005, "Manager request", "open", 502)
    return api


def okta_api() -> OktaApi:
    api = OktaApi(auth=OKTA_AUTH)
    api.add_user("00u1jane", "jane@example.com", "Jane", "Doe")
    api.add_user("00u3liwei", "li.wei@example.com", "Li", "Wei")
    return api


def tools_config(zendesk: str | None = None, okta: str | None = None, webhook: str | None = None, timeout_s: float = 2) -> dict[str, Any]:
    """The `tools:` section for the servers given (None: that tool family stays on the sandbox)."""
    adapters: dict[str, str] = {}
    section: dict[str, Any] = {"adapters": adapters}
    if zendesk:
        adapters |= {"ticket_lookup": "zendesk", "ticket_update": "zendesk"}
        section["zendesk"] = {"base_url": zendesk, "email": "agent@acme.test", "token_env": ZENDESK_TOKEN_ENV, "timeout_s": timeout_s}
    if okta:
        adapters |= {"account_lookup": "okta", "verify_identity": "okta", "password_reset": "okta"}
        section["okta"] = {"base_url": okta, "token_env": OKTA_TOKEN_ENV, "timeout_s": timeout_s}
    if webhook:
        adapters["escalate_to_human"] = "webhook"
        section["escalation_webhook"] = {"url": webhook, "secret_env": WEBHOOK_SECRET_ENV, "timeout_s": timeout_s, "run_url": "https://caseplan.acme.test/runs/{run_id}"}
    return {"tools": section}


class FixedRouter:
    """Routing is not under test here: every ticket goes to one template."""

    def __init__(self, template: str) -> None:
        self.template = template

    def route(self, ticket: Ticket) -> RouteDecision:
        return RouteDecision(template=self.template, confidence=1.0, method="rule")


def build_runtime(
    root: Path, config: dict[str, Any], template: str, extra_tools: tuple[Tool, ...] = (), env: dict[str, str] | None = None
) -> Runtime:
    """A runtime from a config file written under `root` (secrets come from os.environ), with
    test-only tools added to the registry the configuration built; `env` as `database_env` gives."""
    path = root / "caseplan.yaml"
    path.write_text(yaml.safe_dump(config))
    settings = load_settings(path, env={"CASEPLAN_DATA_DIR": str(root / "data"), **(env or {})})
    registry = None
    if extra_tools:
        settings.data_path.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
        sandbox = SandboxStore(make_engine(settings.sandbox_url))
        registry = build_registry(engine, sandbox, open_knowledge_index(settings), settings.tools)
        for tool in extra_tools:
            registry.register(tool)
    runtime = Runtime.build(settings, router=FixedRouter(template), registry=registry)
    seed_demo(runtime.sandbox)
    return runtime
