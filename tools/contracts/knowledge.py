"""Knowledge search contract: passages with citation ids, fused score and per-ranker ranks."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import BeforeValidator, Discriminator, Field, StringConstraints, Tag, model_validator

from tools.base import ToolInput, ToolModel

# Fields a filter may name; anything else is refused with the field's name.
FILTER_FIELDS = ("document_id", "source", "product", "category", "updated")


def _iso_date(value: Any) -> Any:  # noqa: ANN401 (any JSON value)
    """An ISO date string (plans are JSON) or a date; a number is not a date here."""
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value[:40]!r} is not an ISO date (YYYY-MM-DD)") from None
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


class DateRange(ToolInput):
    """Inclusive bounds on a date field (`updated`); either side may be open."""

    gte: IsoDate | None = None
    lte: IsoDate | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.gte is None and self.lte is None:
            raise ValueError("a date range needs gte, lte or both")
        if self.gte and self.lte and self.gte > self.lte:
            raise ValueError(f"date range is empty: gte {self.gte} is after lte {self.lte}")
        return self


# Bounded like the metadata they match (a field holds at most 500 characters), so a filter
# cannot grow into a query the cluster refuses (OpenSearch caps `terms` at 65,536 values).
FilterText = Annotated[str, StringConstraints(max_length=500)]


def _filter_shape(value: Any) -> str | None:  # noqa: ANN401 (any JSON value)
    """Which kind of filter value this is, so an error speaks of that kind alone."""
    if isinstance(value, str):
        return "value"
    if isinstance(value, list):
        return "values"
    return "range" if isinstance(value, dict | DateRange) else None


FilterValue = Annotated[
    Annotated[FilterText, Tag("value")] | Annotated[list[FilterText], Field(max_length=100), Tag("values")] | Annotated[DateRange, Tag("range")],
    Discriminator(
        _filter_shape,
        custom_error_type="filter_value",
        custom_error_message="a filter value is a string, a list of strings, or {gte, lte} dates",
    ),
]


class KnowledgeSearchInput(ToolInput):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
    filters: dict[str, FilterValue] = {}
    k: int = Field(5, ge=1, le=50)

    @model_validator(mode="after")
    def _known_filters(self) -> KnowledgeSearchInput:
        unknown = sorted(set(self.filters) - set(FILTER_FIELDS))
        if unknown:
            raise ValueError(f"unknown filter field(s) {', '.join(unknown)} (known: {', '.join(FILTER_FIELDS)})")
        for name, value in self.filters.items():
            if isinstance(value, DateRange) != (name == "updated"):
                raise ValueError(f"filter {name!r}: " + ("use {gte, lte} dates" if name == "updated" else "use a value or a list of values"))
        return self


class Passage(ToolModel):
    citation_id: str  # "<document id>#<start>-<end>": character span in the document's text
    document_id: str
    title: str
    section: str
    text: str
    start: int
    end: int
    score: float  # fused score (what the passages are ordered by)
    ranks: dict[str, int | None] = {}  # each sub-ranker's rank of this passage; None: not in its candidates


class KnowledgeSearchOutput(ToolModel):
    passages: list[Passage]
    backend: str
