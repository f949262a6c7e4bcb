"""Builds the tool registry from configuration: which adapter serves each tool.

Everything defaults to the sandbox and the local escalation queue (zero set-up); the
`tools:` section of the config switches single tools to the REST adapters, whose secrets
are read from the environment variables the config names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from agent.db import make_engine
from agent.settings import ConfigError, KnowledgeSettings, Settings, ToolSettings
from tools.adapters.okta import OktaAccountLookup, OktaDirectory, OktaPasswordReset, OktaVerifyIdentity, okta_auth
from tools.adapters.platform_webhook import WebhookEscalationNotifier
from tools.adapters.zendesk import ZendeskHelpdesk, ZendeskTicketLookup, ZendeskTicketUpdate, zendesk_auth
from tools.base import Tool
from tools.embeddings import Embedder, SentenceTransformerEmbedder
from tools.escalation import EscalateToHuman, EscalationQueue
from tools.http import HttpService
from tools.knowledge.documents import load_documents
from tools.knowledge.embedded import DEMO_SOURCE, EmbeddedIndex
from tools.knowledge.ranking import RankingConfig
from tools.knowledge.tool import DeferredBackend, KnowledgeSearch, SearchBackend
from tools.registry import ToolRegistry
from tools.sandbox.helpdesk import SandboxTicketLookup, SandboxTicketUpdate
from tools.sandbox.identity import SandboxAccountLookup, SandboxPasswordReset, SandboxVerifyIdentity
from tools.sandbox.store import SandboxStore
from tools.verifications import VerificationLedger
from tools.webhooks import WebhookSender

DEMO_KB = Path(__file__).resolve().parent.parent / "tools" / "sandbox" / "demo_kb"


def ranking_config(knowledge: KnowledgeSettings) -> RankingConfig:
    return RankingConfig(
        fusion=knowledge.fusion,
        rrf_k=knowledge.rrf_k,
        weights={"bm25": knowledge.bm25_weight, "dense": knowledge.dense_weight},
        short_weights={"bm25": knowledge.short_bm25_weight, "dense": knowledge.short_dense_weight},
        candidates=knowledge.candidates,
        query_window_tokens=knowledge.query_window_tokens,
        window_tie_breaker=knowledge.window_tie_breaker,
    )


def open_embedded_index(folder: Path, embedder: Embedder | None = None, knowledge: KnowledgeSettings | None = None) -> EmbeddedIndex:
    """The embedded index in `folder`; an empty one is filled with the demo knowledge base."""
    knowledge = knowledge or KnowledgeSettings()
    index = EmbeddedIndex(
        folder, embedder or SentenceTransformerEmbedder(), ranking_config(knowledge), knowledge.chunk_tokens, knowledge.overlap_tokens
    )
    if index.count() == 0:
        documents, _ = load_documents([DEMO_KB], source=DEMO_SOURCE)
        index.ingest(documents, source=DEMO_SOURCE)
    return index


def open_knowledge_index(settings: Settings, embedder: Embedder | None = None) -> SearchBackend:
    """The backend `knowledge.backend` names: the embedded index, or an OpenSearch index."""
    knowledge = settings.knowledge
    embedder = embedder or SentenceTransformerEmbedder(settings.embeddings.model_path, settings.embeddings.batch_size)
    if knowledge.backend == "opensearch":
        from tools.knowledge.opensearch import OpenSearchIndex

        index = OpenSearchIndex.from_settings(knowledge, embedder, ranking_config(knowledge))
        index.ensure_index()
        index.ensure_pipeline()
        return index
    return open_embedded_index(settings.knowledge_path, embedder, knowledge)


def _secret(env: Mapping[str, str], variable: str, setting: str) -> str:
    value = env.get(variable, "").strip()
    if not value:
        raise ConfigError(f"environment variable {variable} (named by tools.{setting}) is not set")
    return value


def _zendesk(config: ToolSettings, env: Mapping[str, str]) -> ZendeskHelpdesk:
    zd = config.zendesk
    auth = zendesk_auth(_secret(env, zd.token_env, "zendesk.token_env"), zd.email)
    return ZendeskHelpdesk(HttpService("zendesk", str(zd.base_url), headers=auth, timeout_s=zd.timeout_s))


def _okta(config: ToolSettings, env: Mapping[str, str]) -> OktaDirectory:
    ok = config.okta
    auth = okta_auth(_secret(env, ok.token_env, "okta.token_env"))
    return OktaDirectory(HttpService("okta", str(ok.base_url), headers=auth, timeout_s=ok.timeout_s))


def _escalation(engine: Engine, config: ToolSettings, env: Mapping[str, str]) -> EscalateToHuman:
    queue = EscalationQueue(engine)
    if config.adapters.escalate_to_human == "queue":
        return EscalateToHuman(queue)
    hook = config.escalation_webhook
    sender = WebhookSender(str(hook.url), _secret(env, hook.secret_env, "escalation_webhook.secret_env"), timeout_s=hook.timeout_s)
    return EscalateToHuman(queue, [WebhookEscalationNotifier(sender, hook.run_url)])


def _adapter_tools(engine: Engine, sandbox: SandboxStore, config: ToolSettings, env: Mapping[str, str]) -> list[Tool]:
    """One tool per name: the sandbox's, unless the configuration chose a REST adapter for it."""
    chosen = config.adapters
    served: dict[str, Tool] = {}

    def use(*tools: Tool) -> None:
        served.update((tool.name, tool) for tool in tools)

    use(SandboxTicketLookup(sandbox), SandboxTicketUpdate(sandbox))
    use(SandboxAccountLookup(sandbox), SandboxVerifyIdentity(sandbox), SandboxPasswordReset(sandbox))
    if "zendesk" in (chosen.ticket_lookup, chosen.ticket_update):
        helpdesk = _zendesk(config, env)
        if chosen.ticket_lookup == "zendesk":
            use(ZendeskTicketLookup(helpdesk))
        if chosen.ticket_update == "zendesk":
            use(ZendeskTicketUpdate(helpdesk))
    if "okta" in (chosen.account_lookup, chosen.verify_identity):
        directory = _okta(config, env)
        if chosen.account_lookup == "okta":
            use(OktaAccountLookup(directory))
        if chosen.verify_identity == "okta":  # and password_reset: the settings keep the two together
            verifications = VerificationLedger(engine)
            ttl = timedelta(seconds=config.okta.reset_link_ttl_s)
            use(OktaVerifyIdentity(directory, verifications), OktaPasswordReset(directory, verifications, ttl))
    use(_escalation(engine, config, env))
    return list(served.values())


def build_registry(
    engine: Engine,
    sandbox: SandboxStore,
    knowledge: SearchBackend,
    tools: ToolSettings | None = None,
    env: Mapping[str, str] | None = None,
) -> ToolRegistry:
    """The registry the `tools:` settings ask for (all sandbox and local queue by default)."""
    chosen = _adapter_tools(engine, sandbox, tools or ToolSettings(), os.environ if env is None else env)
    return ToolRegistry([*chosen, KnowledgeSearch(knowledge)])


def registry_from_settings(settings: Settings) -> ToolRegistry:
    """The registry the configuration asks for, for commands that never run a ticket: nothing is
    opened (database, cluster, knowledge index) until a tool is called."""
    knowledge = DeferredBackend(
        lambda: open_knowledge_index(settings), backend_name=settings.knowledge.backend, in_process=settings.knowledge.backend == "embedded"
    )
    return build_registry(make_engine(settings.database_url), SandboxStore(make_engine(settings.sandbox_url)), knowledge, settings.tools)
