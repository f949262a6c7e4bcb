"""Builds the tool registry from configuration: which adapter serves each tool."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from agent.db import make_engine
from agent.settings import Settings
from tools.escalation import EscalateToHuman, EscalationQueue
from tools.knowledge.documents import parse_markdown
from tools.knowledge.fts import FtsIndex
from tools.knowledge.tool import KnowledgeSearch
from tools.registry import ToolRegistry
from tools.sandbox.helpdesk import SandboxTicketLookup, SandboxTicketUpdate
from tools.sandbox.identity import SandboxAccountLookup, SandboxPasswordReset, SandboxVerifyIdentity
from tools.sandbox.store import SandboxStore

DEMO_KB = Path(__file__).resolve().parent.parent / "tools" / "sandbox" / "demo_kb"


def open_knowledge_index(path: Path) -> FtsIndex:
    """The embedded index; an empty one is filled with the demo knowledge base."""
    index = FtsIndex(path)
    if index.count() == 0:
        index.replace_all(section for doc in sorted(DEMO_KB.glob("*.md")) for section in parse_markdown(doc))
    return index


def build_registry(engine: Engine, sandbox: SandboxStore, knowledge: FtsIndex) -> ToolRegistry:
    """The default registry: sandbox helpdesk and identity, local queue, embedded knowledge."""
    return ToolRegistry(
        [
            SandboxTicketLookup(sandbox),
            SandboxTicketUpdate(sandbox),
            SandboxAccountLookup(sandbox),
            SandboxVerifyIdentity(sandbox),
            SandboxPasswordReset(sandbox),
            EscalateToHuman(EscalationQueue(engine)),
            KnowledgeSearch(knowledge),
        ]
    )


def registry_from_settings(settings: Settings) -> ToolRegistry:
    """The registry the configuration asks for, for commands that never run a ticket."""
    settings.data_path.mkdir(parents=True, exist_ok=True)
    return build_registry(
        make_engine(settings.database_url),
        SandboxStore(make_engine(settings.sandbox_url)),
        open_knowledge_index(settings.data_path / "knowledge.db"),
    )
