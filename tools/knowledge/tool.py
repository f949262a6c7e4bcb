"""The `knowledge_search` tool over any backend with `search(query, filters, k)`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from tools.base import Tool, ToolContext, ToolError
from tools.contracts.knowledge import FilterValue, KnowledgeSearchInput, KnowledgeSearchOutput, Passage
from tools.knowledge.errors import ClusterError


class SearchBackend(Protocol):
    backend_name: str
    in_process: bool  # searches without leaving the process (the embedded index)

    def search(self, query: str, filters: dict[str, FilterValue], k: int) -> list[Passage]: ...


class DeferredBackend:
    """A backend opened on its first search: commands that only describe the tools (`tools list`,
    `plans validate`) need the knowledge tool's contract, not a cluster, nor an embedded index
    filled with the demo knowledge base on a fresh folder."""

    def __init__(self, open_backend: Callable[[], SearchBackend], *, backend_name: str, in_process: bool) -> None:
        self._open_backend = open_backend
        self._backend: SearchBackend | None = None
        self._lock = threading.Lock()
        self.backend_name = backend_name
        self.in_process = in_process

    def search(self, query: str, filters: dict[str, FilterValue], k: int) -> list[Passage]:
        with self._lock:
            if self._backend is None:
                self._backend = self._open_backend()
        return self._backend.search(query, filters, k)


class KnowledgeSearch(Tool[KnowledgeSearchInput, KnowledgeSearchOutput]):
    name = "knowledge_search"
    description = "Search the support knowledge base (BM25 + dense, fused); passages come back with citation ids."
    input_model = KnowledgeSearchInput
    output_model = KnowledgeSearchOutput
    side_effects = False

    def __init__(self, backend: SearchBackend) -> None:
        self.backend = backend
        self.in_process = backend.in_process

    def invoke(self, args: KnowledgeSearchInput, ctx: ToolContext) -> KnowledgeSearchOutput:
        try:
            passages = self.backend.search(args.query, dict(args.filters), args.k)
        except ClusterError as exc:  # the cluster's trouble, not the query's
            raise ToolError("transient" if exc.transient else "permanent", str(exc), status_code=502, retry_after=exc.retry_after) from exc
        except ValueError as exc:
            raise ToolError("permanent", str(exc), status_code=400) from exc
        return KnowledgeSearchOutput(passages=passages, backend=self.backend.backend_name)
