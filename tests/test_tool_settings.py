"""The `tools:` settings: the default is the sandbox, each REST adapter needs its address and a
secret from a named environment variable, and the production profile is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.db import make_engine
from agent.settings import ConfigError, load_settings
from agent.tooling import build_registry, open_embedded_index
from tools.sandbox.store import SandboxStore

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = REPO / "configs" / "production.yaml"
SECRETS = {"ZENDESK_API_TOKEN": "zd", "OKTA_API_TOKEN": "okta", "CASEPLAN_WEBHOOK_SECRET": "hook"}


def registry(settings, tmp_path, env):
    engine = make_engine(f"sqlite:///{tmp_path / 'record.db'}")
    sandbox = SandboxStore(make_engine(f"sqlite:///{tmp_path / 'sandbox.db'}"))
    return build_registry(engine, sandbox, open_embedded_index(tmp_path / "knowledge"), settings.tools, env)


def adapters(reg) -> dict[str, str]:
    return {tool.name: tool.adapter for tool in reg}


def test_default_is_the_sandbox_and_the_local_queue(tmp_path):
    reg = registry(load_settings(env={}), tmp_path, {})
    assert adapters(reg) == {
        "account_lookup": "sandbox",
        "escalate_to_human": "queue",
        "knowledge_search": "local",
        "password_reset": "sandbox",
        "ticket_lookup": "sandbox",
        "ticket_update": "sandbox",
        "verify_identity": "sandbox",
    }


def test_production_profile_is_valid_and_uses_the_rest_adapters(tmp_path):
    settings = load_settings(PRODUCTION, env={})
    assert settings.database_url.startswith("postgresql+psycopg://")
    reg = registry(settings, tmp_path, SECRETS)
    assert adapters(reg) == {
        "account_lookup": "okta",
        "escalate_to_human": "queue+webhook",
        "knowledge_search": "local",
        "password_reset": "okta",
        "ticket_lookup": "zendesk",
        "ticket_update": "zendesk",
        "verify_identity": "okta",
    }
    zendesk = reg.get("ticket_update").helpdesk.http.client
    assert str(zendesk.base_url) == "https://yourcompany.zendesk.com"
    assert zendesk.headers["authorization"].startswith("Basic ")
    assert reg.get("password_reset").directory.http.client.headers["authorization"] == "SSWS okta"


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_names_its_variable(tmp_path, missing):
    env = {name: value for name, value in SECRETS.items() if name != missing}
    with pytest.raises(ConfigError, match=f"environment variable {missing} .* is not set"):
        registry(load_settings(PRODUCTION, env={}), tmp_path, env)


def test_one_tool_can_move_alone_by_environment_override(tmp_path):
    env = {"CASEPLAN__TOOLS__ADAPTERS__TICKET_UPDATE": "zendesk", "CASEPLAN__TOOLS__ZENDESK__BASE_URL": "http://127.0.0.1:9"}
    reg = registry(load_settings(env=env), tmp_path, {"ZENDESK_API_TOKEN": "zd"})
    assert adapters(reg)["ticket_update"] == "zendesk" and adapters(reg)["ticket_lookup"] == "sandbox"
    assert reg.get("ticket_update").helpdesk.http.client.headers["authorization"] == "Bearer zd"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("tools:\n  adapters: {ticket_update: zendesk}\n", "tools.zendesk.base_url is required"),
        ("tools:\n  adapters: {escalate_to_human: webhook}\n", "tools.escalation_webhook.url is required"),
        ("tools:\n  adapters: {password_reset: okta}\n  okta: {base_url: 'https://x.okta.com'}\n", "must use the same adapter"),
        ("tools:\n  adapters: {ticket_update: jira}\n", "tools.adapters.ticket_update"),
        ("tools:\n  zendesk: {token_env: 'my token'}\n", "tools.zendesk.token_env"),
        ("tools:\n  zendesk: {base_url: 'ftp://x'}\n", "tools.zendesk.base_url"),
        ("tools:\n  zendesk: {api_token: 'abc'}\n", "tools.zendesk.api_token: Extra inputs are not permitted"),
        (
            "executor: {step_timeout_s: 3}\ntools:\n  adapters: {ticket_update: zendesk}\n  zendesk: {base_url: 'https://x.zendesk.com', timeout_s: 5}\n",
            "the zendesk adapter's timeout_s (5.0) must be below executor.step_timeout_s (3.0)",
        ),
    ],
)
def test_bad_tool_settings_are_one_clear_line(tmp_path, yaml_text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={})
    assert message in str(info.value) and "\n" not in str(info.value) and str(config) in str(info.value)
