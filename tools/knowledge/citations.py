"""Citation ids: a reply names the passage it quotes as `[<document id>#<start>-<end>]`.

Ingestion and the reply's grounding check (`policies/grounding.py`) share these rules, so every
document id the index accepts can be cited and is recognised when it is: an id holds no
whitespace and no square brackets, and is at most `MAX_ID_CHARS` long.
"""

from __future__ import annotations

import re

MAX_ID_CHARS = 200
# '#', two character offsets into a document of at most 16 MB (8 digits each) and '-'.
_SPAN_CHARS = 18
CITATION = re.compile(rf"\[([^\[\]\s]{{1,{MAX_ID_CHARS + _SPAN_CHARS}}})\]")
_NOT_CITABLE = re.compile(r"[\s\[\]]+")


def citation_id(document_id: str, start: int, end: int) -> str:
    """The id of the passage `text[start:end]` of a document."""
    return f"{document_id}#{start}-{end}"


def citable_id(document_id: str) -> str:
    """`document_id` with each run of whitespace and brackets turned into one '-' (none at
    either end): "refund card timing" -> "refund-card-timing"; a citable id stays as it is."""
    return "-".join(part for part in _NOT_CITABLE.split(document_id) if part)
