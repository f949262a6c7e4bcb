"""Metadata filters over documents: equality, sets of values, and date ranges on `updated`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tools.contracts.knowledge import FILTER_FIELDS, DateRange, FilterValue
from tools.knowledge.documents import Document


def check_filters(filters: Mapping[str, FilterValue]) -> None:
    """ValueError naming the field when a filter cannot apply (backends call this before searching)."""
    for name, value in filters.items():
        if name not in FILTER_FIELDS:
            raise ValueError(f"unknown filter field {name!r} (known: {', '.join(FILTER_FIELDS)})")
        if (name == "updated") != isinstance(value, DateRange):
            raise ValueError(f"filter {name!r}: " + ("use a date range {gte, lte}" if name == "updated" else "use a value or a list of values"))


def _field(document: Document, name: str) -> object:
    return document.id if name == "document_id" else getattr(document, name)


def document_mask(documents: Sequence[Document], filters: Mapping[str, FilterValue]) -> np.ndarray:
    """True for each document every filter accepts (all of them when there are no filters)."""
    check_filters(filters)
    mask = np.ones(len(documents), dtype=bool)
    for name, value in filters.items():
        if isinstance(value, DateRange):
            accepted = [
                (d.updated is not None) and (value.gte is None or d.updated >= value.gte) and (value.lte is None or d.updated <= value.lte)
                for d in documents
            ]
        else:
            wanted = {value} if isinstance(value, str) else set(value)
            accepted = [_field(d, name) in wanted for d in documents]
        mask &= np.array(accepted, dtype=bool)
    return mask
