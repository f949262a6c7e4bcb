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


class MetadataColumns:
    """Documents' filterable fields as integer codes and a date array, built once per index
    generation, so a filter costs a few vector operations instead of a pass over Python objects."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.size = len(documents)
        self.codes: dict[str, np.ndarray] = {}
        self.vocabulary: dict[str, dict[object, int]] = {}
        for name in FILTER_FIELDS:
            if name == "updated":
                continue
            vocabulary: dict[object, int] = {}
            self.codes[name] = np.array([vocabulary.setdefault(_field(d, name), len(vocabulary)) for d in documents], dtype=np.int32)
            self.vocabulary[name] = vocabulary
        self.updated = np.array([d.updated or "NaT" for d in documents], dtype="datetime64[D]")

    def mask(self, filters: Mapping[str, FilterValue]) -> np.ndarray:
        """True for each document every filter accepts (all of them when there are no filters)."""
        check_filters(filters)
        mask = np.ones(self.size, dtype=bool)
        for name, value in filters.items():
            if isinstance(value, DateRange):
                known = ~np.isnat(self.updated)
                if value.gte is not None:
                    known &= self.updated >= np.datetime64(value.gte, "D")
                if value.lte is not None:
                    known &= self.updated <= np.datetime64(value.lte, "D")
                mask &= known
            else:
                wanted = [value] if isinstance(value, str) else list(value)
                codes = [self.vocabulary[name][v] for v in wanted if v in self.vocabulary[name]]
                mask &= np.isin(self.codes[name], np.array(codes, dtype=np.int32))
        return mask
