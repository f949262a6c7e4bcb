"""The output guard: a reply is sent only if what it states is backed by what was retrieved.

Knowledge replies: every paragraph that states something must cite a passage that was really
retrieved, and each of its sentences must share most of its content words with the cited
passages. Every reply: no secrets (tokens, keys, reset links), no internal notes, and no
e-mail address, phone or card number that is neither the requester's nor in a cited passage.
A reply that fails is not sent; the ticket goes to a person with the rule that stopped it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from policies.pii import find_pii
from tools.knowledge.citations import CITATION

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_TOKEN = re.compile(r"[a-z0-9]+")
_SECRETS = [
    re.compile(r"[?&](?:token|code|key|secret|signature)=[A-Za-z0-9_\-.%]{8,}", re.I),
    re.compile(r"\b(?:sk|pk|rk)[-_](?:live|test)?[-_]?[A-Za-z0-9]{16,}\b"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\b(?:password|passwd|pwd|api[_ ]?key|secret|token)\s*(?:is|:|=)\s*\S{6,}", re.I),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."),
]
_MASKED_EMAIL = re.compile(r"\b([A-Za-z0-9])\*{3}@([A-Za-z0-9.-]+\.[A-Za-z]{2,24})\b")
_STOP = frozenset(
    "a an the and or but if then than so of to in on at by for with from as is are was were be been being it its this that these those "
    "you your yours we our ours they their them he she his her i me my can could will would should may might must do does did done "
    "not no yes there here what which who whom when where why how all any some each more most other such only own same too very just "
    "also into over under again further once about up down out off".split()
)
BOILERPLATE = frozenset({"here is what our help centre says:"})


class ReplyViolation(BaseModel):
    rule_id: str
    detail: str


def _content_words(text: str) -> set[str]:
    return {token for token in _TOKEN.findall(text.lower()) if token not in _STOP and len(token) > 1}


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(paragraph) if s.strip()]


def check_grounding(text: str, passages: Sequence[Mapping[str, Any]], min_support: float) -> list[ReplyViolation]:
    """Citations name retrieved passages, and each factual sentence is supported by them."""
    by_id = {p["citation_id"]: p for p in passages}
    problems: list[ReplyViolation] = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph or paragraph.lower() in BOILERPLATE:
            continue
        cited = CITATION.findall(paragraph)
        unknown = [c for c in cited if c not in by_id]
        if unknown:
            problems.append(ReplyViolation(rule_id="output-guard.citation", detail=f"cites {unknown[0]!r}, which was not retrieved"))
            continue
        body = CITATION.sub("", paragraph)
        if not cited:
            if _content_words(body):
                problems.append(ReplyViolation(rule_id="output-guard.uncited", detail=f"no citation for {body[:80]!r}"))
            continue
        support = set().union(*(_content_words(by_id[c]["text"]) for c in cited))
        for sentence in _sentences(body):
            words = _content_words(sentence)
            if len(words) < 2:
                continue
            share = len(words & support) / len(words)
            if share < min_support:
                detail = f"{sentence[:80]!r}: {share:.0%} of its words are in the cited passages (needs {min_support:.0%})"
                problems.append(ReplyViolation(rule_id="output-guard.unsupported", detail=detail))
    return problems


def check_disclosure(
    text: str,
    *,
    requester: str | None,
    passages: Sequence[Mapping[str, Any]] = (),
    internal_notes: Iterable[str] = (),
) -> list[ReplyViolation]:
    """No secrets, internal notes or personal data that is not the requester's own."""
    problems = []
    for pattern in _SECRETS:
        if pattern.search(text):
            problems.append(ReplyViolation(rule_id="output-guard.secret", detail="the reply contains something that looks like a secret"))
            break
    lowered = " ".join(text.lower().split())
    for note in internal_notes:
        if note and len(note.strip()) >= 8 and " ".join(note.lower().split()) in lowered:
            problems.append(ReplyViolation(rule_id="output-guard.internal-note", detail="the reply quotes an internal note"))
            break
    public = " ".join(str(p.get("text", "")) for p in passages).lower()
    own = (requester or "").lower()
    for finding in find_pii(text, ("email", "card", "iban", "national_id", "phone")):
        value = finding.value.lower()
        if finding.kind == "email" and value == own:
            continue
        if finding.kind in ("email", "phone") and value in public:
            continue  # a support address or number from the help centre
        problems.append(ReplyViolation(rule_id="output-guard.personal-data", detail=f"the reply contains a {finding.kind} that is not the requester's"))
        break
    for match in _MASKED_EMAIL.finditer(text):
        first, domain = match.group(1).lower(), match.group(2).lower()
        if not own or own[0] != first or own.rpartition("@")[2] != domain:
            problems.append(ReplyViolation(rule_id="output-guard.personal-data", detail="the reply names another customer's address"))
            break
    return problems
