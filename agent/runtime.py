"""Assembles a working caseplan from settings: stores, tools, catalogue, policy, models, graph.

Heavy parts (embedding model, local GGUF model) load on first use, so commands that never
route a ticket (`plans validate`, `tools list`) start fast.
"""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from sqlalchemy.engine import Engine

from agent.checkpoint_cipher import CheckpointSerializer
from agent.db import make_engine
from agent.executor import Executor
from agent.graph import GraphDeps, build_graph
from agent.keyfile import use_configured_fingerprint_key
from agent.models.api import ApiModel
from agent.models.local import LocalModel
from agent.models.tasks import ApiRouteModel, LocalRouteModel, LocalSlotModel
from agent.planner import Planner
from agent.record import RecordProtection, RunStore, SideEffectLedger
from agent.route_cache import CachingRouter
from agent.routing import NearestNeighbourRouter, Router, side_effect_templates
from agent.settings import Settings
from agent.slots import SlotFiller
from agent.tooling import build_registry, open_knowledge_index
from plans.catalogue import Catalogue, load_catalogue
from policies.engine import PolicyEngine
from policies.ratelimit import RateLimiter
from tools.embeddings import Embedder, SentenceTransformerEmbedder
from tools.registry import ToolRegistry
from tools.sandbox.store import SandboxStore


@functools.cache
def code_version() -> str:
    """Read once: the installed distribution does not change under a running process."""
    try:
        return version("caseplan")
    except PackageNotFoundError:
        return "0+unknown"


def open_checkpoint_db(path: Path) -> sqlite3.Connection:
    """WAL with normal sync: one fsync per checkpoint would dominate a ticket's cost, and a
    lost last checkpoint is safe because side effects are deduplicated by the ledger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    store: RunStore
    ledger: SideEffectLedger
    sandbox: SandboxStore
    registry: ToolRegistry
    catalogue: Catalogue
    policy: PolicyEngine
    embedder: Embedder
    local_model: LocalModel
    router: Router
    planner: Planner
    executor: Executor
    graph: Any = field(repr=False)

    @property
    def versions(self) -> dict[str, str]:
        return {
            "code": code_version(),
            "catalogue": self.catalogue.version,
            "policy": self.policy.version,
            "embedder": self.embedder.model_id,
            "local_model": self.local_model.model_id,
        }

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        local_model: LocalModel | None = None,
        router: Router | None = None,
        registry: ToolRegistry | None = None,
    ) -> Runtime:
        """Wire everything; tests and benchmarks may pass ready-made parts."""
        data = settings.data_path
        data.mkdir(parents=True, exist_ok=True)
        use_configured_fingerprint_key(settings, create=True)
        engine = make_engine(settings.database_url)
        store = RunStore(engine, RecordProtection.from_settings(settings, writer=True), migrate=settings.record.auto_migrate)
        ledger = SideEffectLedger(engine)
        sandbox = SandboxStore(make_engine(settings.sandbox_url))
        embedder = embedder or SentenceTransformerEmbedder(settings.embeddings.model_path, settings.embeddings.batch_size)
        registry = registry or build_registry(engine, sandbox, open_knowledge_index(settings, embedder), settings.tools)
        catalogue = load_catalogue([Path(p) for p in settings.catalogue.paths], registry)
        policy = PolicyEngine([Path(p) for p in settings.policies.files], registry, catalogue.names(), RateLimiter(engine))
        local_model = local_model or LocalModel(settings.local_model)
        api = ApiRouteModel(ApiModel(settings.api_model, pii_kinds=settings.pii.api_model)) if settings.api_model.base_url else None
        if router is None:
            acting = side_effect_templates(catalogue, registry)
            router = NearestNeighbourRouter(catalogue, embedder, settings.router, LocalRouteModel(local_model), cache_dir=data / "cache", api=api, acting=acting)
            if settings.router.cache.enabled:
                versions = {"catalogue": catalogue.version, "policy": policy.version, "embedder": embedder.model_id, "local_model": local_model.model_id}
                router = CachingRouter(router, settings.router.cache, versions)
        planner = Planner(catalogue, registry, SlotFiller(LocalSlotModel(local_model), settings.planner.max_attempts))
        executor = Executor(registry, ledger, settings.executor, gate=policy)
        checkpointer = SqliteSaver(open_checkpoint_db(settings.checkpoint_path), serde=CheckpointSerializer(lambda: store.protection.vault))
        graph = build_graph(GraphDeps(store, router, planner, policy, executor), checkpointer)
        built = cls(
            settings=settings,
            engine=engine,
            store=store,
            ledger=ledger,
            sandbox=sandbox,
            registry=registry,
            catalogue=catalogue,
            policy=policy,
            embedder=embedder,
            local_model=local_model,
            router=router,
            planner=planner,
            executor=executor,
            graph=graph,
        )
        store.versions = built.versions  # stored with every event: what shaped it
        return built
