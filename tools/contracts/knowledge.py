"""Knowledge search contract: passages with citation ids, fused score and per-ranker ranks."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from tools.base import ToolModel

FilterValue = str | list[str]


class KnowledgeSearchInput(ToolModel):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    filters: dict[str, FilterValue] = {}
    k: int = Field(5, ge=1, le=50)


class Passage(ToolModel):
    citation_id: str
    document_id: str
    title: str
    section: str
    text: str
    start: int
    end: int
    score: float
    ranks: dict[str, int | None] = {}


class KnowledgeSearchOutput(ToolModel):
    passages: list[Passage]
    backend: str
