"""The input guard: ticket text and retrieved passages are data, never instructions.

Detectors look for what an attacker writes to steer an agent: orders to ignore the rules,
fake system/assistant/tool messages, tool names and call syntax, requests to act on someone
else's account, talk of skipping verification, encoded payloads and text made to slip past
filters (control and zero-width characters, look-alike letters from other scripts, spacing and
digit substitutions). A flagged ticket is handed to a person with the rule ids; it never gets
a side effect. Topics that always need a person are matched here too.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from policies.models import InputGuard, Topic
from policies.pii import mask_text

_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_WORD = re.compile(r"[^\W\d_]{2,}", re.UNICODE)
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=])")
_ESCAPES = re.compile(r"(?:\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|%[0-9a-fA-F]{2}|&#x?[0-9a-fA-F]{2,5};){6,}")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}")

_TARGET = r"(?:instructions?|rules?|polic(?:y|ies)|guidelines?|prompts?|directions?|constraints?|guardrails?|restrictions?|programming|safeguards?|checks?)"
_OVERRIDE = [
    re.compile(rf"\b(?:ignore|disregard|forget|override|overrule|bypass|drop|abandon|skip)\b[^.\n]{{0,50}}\b{_TARGET}\b"),
    re.compile(rf"\b(?:previous|prior|above|earlier|original|old|your|system|safety)\s+{_TARGET}\s+(?:are|is|no longer|do not|don't)\b"),
    re.compile(r"\b(?:new|updated|revised|real|actual|secret)\s+(?:system\s+)?(?:instructions?|orders|directives?|prompt)\b"),
    re.compile(r"\b(?:developer|debug|god|admin|maintenance|sudo|unrestricted|jailbreak)\s+mode\b"),
    re.compile(r"\bjailbr[eo]ak|\bdo anything now\b|\bdan mode\b"),
    re.compile(r"\byou are (?:now|no longer)\b[^.\n]{0,40}\b(?:admin|administrator|root|developer|unrestricted|free|allowed|authori[sz]ed|bound|an? (?:ai|assistant|agent|bot))\b"),
    re.compile(r"\b(?:reveal|print|show|repeat|output|leak|dump)\b[^.\n]{0,30}\b(?:system prompt|your prompt|your instructions|hidden instructions|internal notes?|api keys?|secrets?|tokens?)\b"),
    re.compile(r"\b(?:act|behave|respond) as (?:an? |the )?(?:admin|administrator|system|root|superuser|developer)\b"),
    re.compile(r"\bpretend (?:to be|you are|that you)\b"),
    re.compile(r"\bfrom now on,? (?:you|always|never|only)\b"),
    re.compile(r"\b(?:ignore|disregard|forget)\b[^.\n]{0,20}\beverything\b[^.\n]{0,20}\b(?:you were|you've been|you have been|you are|told|above|before)\b"),
    re.compile(
        r"\b(?:earlier|previous|prior|above|preceding|original|old)\s+(?:guidance|instructions?|text|messages?|content|answers?|information|steps?)\s+"
        r"(?:is|are|was|were)\s+(?:now\s+)?(?:void|invalid|obsolete|outdated|cancell?ed|revoked|wrong|superseded|no longer valid)\b"
    ),
    re.compile(r"\byou are (?:a |an )?new (?:ai|assistant|agent|bot|model)\b"),
    # the same order in other languages customers write in
    re.compile(r"\b(?:ignorier\w*|vergiss|vergessen sie)\b[^.\n]{0,40}\b(?:anweisung\w*|regeln|vorgaben)\b"),
    re.compile(r"\b(?:ignor\w*|olvid\w*|oubli\w*)\b[^.\n]{0,40}\b(?:instrucciones|reglas|consignes|r[eè]gles)\b"),
]
# Only in retrieved passages (an article has no business with these; a customer may): text that
# speaks to the assistant, and a request for secrets that support never takes in a reply. They
# run on the normalised text, whose whitespace is single spaces.
_PASSAGE_ORDERS = [
    re.compile(r"(?:^|[.!?;:] )(?:hey |dear |note to (?:the )?)?(?:assistant|ai assistant|chatbot|the bot|language model|llm|ai model) ?[,;-] "),
    re.compile(r"\b(?:tell|inform|assure) (?:every|all|each|any) (?:customers?|users?)\b"),
    # text written for staff, not customers: quoting it leaks internal procedure
    re.compile(r"\b(?:notes?|reminder) (?:for|to) (?:the )?(?:agents?|staff|support staff|employees|team)\b|\b(?:internal (?:use )?only|agents? only|staff only)\b"),
]
_SECRET_REQUEST = re.compile(
    r"\b(?:send|reply|respond|email|e-mail|tell us|paste|write|give|provide|share|include|post)\b[^.\n]{0,40}"
    r"\b(?:full card number|card numbers?|cvv|cvc|security code|expiry date|expiration date|password|passcode|pin|one-time (?:code|password)|otp"
    r"|mother'?s maiden name|security answers?|answers? to your security questions?|social security number|ssn)\b"
)
# A code the customer was sent is theirs to type into the app, never to hand to support ("reply
# with the 6-digit code we texted you"); "we will send you a code" is not such a request.
_CODE_REQUEST = re.compile(
    r"\b(?:reply|respond|answer) with\b[^.\n]{0,40}\bcodes?\b"
    r"|\b(?:send|give|tell|text|email|forward|read|share)\b (?:it |them )?(?:to |with )?(?:us|our (?:agents?|team|staff)|the agent|an agent|support)\b[^.\n]{0,40}\bcodes?\b"
    r"|\bcodes?\b[^.\n]{0,30}\b(?:in this ticket|in your reply|to us|to our (?:agents?|team|staff)|to an agent|to the agent|to support)\b"
)
# Policy an article must not state to anyone: identity checks skipped, standing override secrets.
_BYPASS_STATEMENT = re.compile(
    r"\bwithout (?:checking|verifying|confirming) (?:the |their |the customer'?s |the caller'?s )?(?:identity|id|ownership)\b"
    r"|\b(?:admin|administrator|override|master|backdoor) (?:pin|code|password|passcode|key)\b"
)
_NEGATION = re.compile(r"\b(?:never|not|don'?t|won'?t|no one|nobody|cannot|can'?t)\b")
_COMPACT_OVERRIDE = re.compile(
    r"ignore(?:all|any|the|your)*(?:previous|prior|above)?(?:instructions|rules|polic)|disregard(?:all|the|your)*(?:previous|prior)|systemprompt|developermode|jailbreak"
)
# No two unbounded runs of the same characters may meet through an optional part (`\s*x?\s*`):
# the engine then tries every split of a long run, and a ticket of 20,000 spaces or newlines
# takes hours (tests/test_guards.py times each pattern on such tickets against a linear one).
_ROLE = [
    re.compile(r"(?im)^[ \t]*(?:[\[(<#*]+[ \t]*)?(?:system|assistant|developer|tool|function|admin|operator)\s*(?:(?:message|prompt|note)\s*)?(?:[\])>*]+\s*)?[:>]"),
    re.compile(r"(?i)(?:[.!?]\s+|[\[(<])(?:system|assistant|developer|tool|function)\s*(?:(?:message|prompt|note|result|output)\s*)?(?:[\])>]\s*)?:"),
    re.compile(r"\b(?:SYSTEM|ASSISTANT|DEVELOPER|TOOL|FUNCTION)(?: MESSAGE| PROMPT| NOTE| RESULT)?\s*:"),
    re.compile(r"<\|?\s*(?:im_start|im_end|system|assistant|endoftext|eot_id|start_header_id)\s*\|?>", re.I),
    re.compile(r"\[/?(?:INST|SYS|SYSTEM)\]|<<\s*/?SYS\s*>>", re.I),
    re.compile(r"</?\s*(?:system|assistant|tool_call|tool_result|function_call|tool|instructions?)\s*>", re.I),
    re.compile(r"\"(?:role|tool|function|tool_name|name)\"\s*:\s*\"", re.I),
    re.compile(r"(?<!#)#{2,}\s*(?:system|instruction|admin|new task)", re.I),
    re.compile(r"\b(?:begin|end)\s+(?:system|admin|operator)\s+(?:message|override|instructions?)\b", re.I),
]
_CALL_SYNTAX = re.compile(r"\b[a-z]+_[a-z_]+\s*\(\s*[a-z_]*\s*[=:)]", re.I)
_OTHER_PARTY = re.compile(
    r"\b(?:on behalf of|for my (?:boss|manager|colleague|co-?worker|wife|husband|partner|friend|son|daughter|mother|father|mom|dad|employee|client|customer|brother|sister|ex)|"
    r"(?:another|someone else'?s|somebody else'?s|a different|the other) (?:user'?s? |customer'?s? |person'?s? )?account|"
    r"(?:his|her|their|my (?:boss|manager|colleague|co-?worker|wife|husband|partner|friend|son|daughter|ex|employee)'?s?) (?:account|password|login|email)|"
    r"(?:account|password|login) (?:of|for|belonging to) (?:my |the |another |a )?(?:boss|manager|colleague|co-?worker|wife|husband|partner|friend|user|customer|employee|someone|client|ex))\b"
)
_ACCOUNT_WORDS = re.compile(r"\b(?:passwords?|reset\w*|accounts?|log ?in|sign ?in|access|unlock\w*|credentials?|verif\w*|recover\w*)\b")
_BYPASS = [
    re.compile(r"\b(?:skip|bypass|without|no need (?:for|to)|don'?t|do not|waive|disable|turn off|ignore|omit|avoid|circumvent)\b[^.\n]{0,30}\b(?:verif\w*|identity checks?|id checks?|2fa|two[- ]factor|mfa|authenticat\w*|security (?:checks?|questions?)|confirmation)\b"),
    re.compile(r"\b(?:i am|i'm|im|this is|we are|speaking as|writing as)\b[^.\n]{0,20}\b(?:the |an |your )?(?:admin|administrator|ceo|cfo|cto|owner of (?:the|this) company|it (?:department|support|admin|team)|security team|sysadmin|support (?:lead|manager|agent)|from (?:it|security|support|engineering|your company))\b"),
    re.compile(r"\b(?:already|previously|been|was) (?:verified|authenticated|approved)\b|\bpre-?approved\b|\bapproval (?:was|is) (?:granted|given)\b"),
    re.compile(r"\bverification[_ ]?id\b|\bver_[0-9a-f]{6,}\b|\brst_[0-9a-f]{6,}\b"),
    re.compile(r"\b(?:authori[sz]ed|allowed|permitted) to (?:reset|access|change|unlock)\b"),
]
_SCRIPT_NAMES = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")


class Flag(BaseModel):
    rule_id: str
    detector: str
    evidence: str


class GuardReport(BaseModel):
    flags: list[Flag] = []
    topics: list[Flag] = []

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    @property
    def rule_ids(self) -> list[str]:
        return [flag.rule_id for flag in [*self.flags, *self.topics]]

    def summary(self) -> str:
        return "; ".join(f"{flag.rule_id}: {flag.evidence}" for flag in [*self.flags, *self.topics])


def normalise(text: str) -> str:
    """NFKC, invisible characters removed, lower case, digit look-alikes mapped, spaces collapsed."""
    folded = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).lower()
    return " ".join(folded.translate(_LEET).split())


def _excerpt(text: str, start: int, end: int) -> str:
    piece = text[max(0, start - 15) : min(len(text), end + 15)]
    return mask_text(" ".join(piece.split()))[:100]


def _scripts(word: str) -> set[str]:
    if word.isascii():
        return {"LATIN"}
    found = set()
    for char in word:
        name = unicodedata.name(char, "")
        for script in _SCRIPT_NAMES:
            if name.startswith(script):
                found.add(script)
    return found


def _decoded_payloads(text: str) -> Iterable[tuple[re.Match[str], str]]:
    for match in _BASE64.finditer(text):
        raw = match.group(0)
        try:
            decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        printable = sum(ch.isprintable() or ch in "\n\t" for ch in decoded)
        if decoded and printable / len(decoded) > 0.9:
            yield match, decoded


class InputGuardian:
    """Runs the configured detectors over ticket text and passages."""

    def __init__(self, config: InputGuard, topics: Iterable[Topic], tool_names: Iterable[str]) -> None:
        self.config = config
        self.detectors = set(config.detectors)
        # A phrase is normalised as the ticket is ("401k" is read as the ticket's "aoik"), matches
        # its plural ("lawyers"), and may begin or end with punctuation ("sue you!", "#metoo").
        self.topics = [
            (topic, re.compile(r"(?<![a-z0-9])(?:" + "|".join(re.escape(normalise(p)) for p in topic.phrases) + r")(?:e?s)?(?![a-z0-9])"))
            for topic in topics
        ]
        names = sorted(name for name in tool_names if "_" in name)
        self._tools = re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b", re.I) if names else None

    def inspect_ticket(self, ticket: Mapping[str, Any]) -> GuardReport:
        """Flags and sensitive topics of a ticket (its subject and text)."""
        text = "\n".join(part for part in (ticket.get("subject"), ticket.get("text")) if part)
        report = GuardReport()
        if not self.config.enabled:
            return report
        if len(text) > self.config.max_chars:
            evidence = f"{len(text)} characters; the limit is {self.config.max_chars}"
            report.flags.append(Flag(rule_id="input-guard.size", detector="size", evidence=evidence))
            return report
        report.flags.extend(self._scan(text, ticket.get("requester_email")))
        flat = normalise(text)
        for topic, pattern in self.topics:
            if (match := pattern.search(flat)) is not None:
                report.topics.append(Flag(rule_id=topic.id, detector="topic", evidence=_excerpt(flat, *match.span())))
        return report

    def inspect_passage(self, text: str) -> list[Flag]:
        """A retrieved passage that carries instructions is not quoted to anyone."""
        if not self.config.enabled:
            return []
        return self._scan(text, None, passage=True)

    def _scan(self, text: str, requester: str | None, *, passage: bool = False) -> list[Flag]:
        flags: list[Flag] = []
        on = self.detectors

        def flag(detector: str, evidence: str) -> None:
            if detector in on and all(f.detector != detector for f in flags):
                flags.append(Flag(rule_id=f"input-guard.{detector}", detector=detector, evidence=evidence))

        for char in sorted(set(text)):  # each distinct character once
            category = unicodedata.category(char)
            if (category == "Cc" and char not in "\n\r\t") or (category == "Cf" and char != "\u200d"):
                flag("control_chars", f"U+{ord(char):04X} at position {text.index(char)}")
                break
        for match in _WORD.finditer(text):
            if len(_scripts(match.group(0))) > 1:
                flag("mixed_script", f"{match.group(0)[:40]!r} mixes scripts")
                break
        flat = normalise(text)
        compact = re.sub(r"[^a-z]", "", flat)
        payload_texts = []
        for match, decoded in _decoded_payloads(text):
            flag("encoded_payload", f"base64 text {match.group(0)[:24]}... decodes to {mask_text(decoded[:40])!r}")
            payload_texts.append(normalise(decoded))
        if (escaped := _ESCAPES.search(text)) is not None:
            flag("encoded_payload", f"escaped bytes {escaped.group(0)[:30]}")
        for candidate in [flat, *payload_texts]:
            for pattern in _OVERRIDE:
                if (match := pattern.search(candidate)) is not None:
                    flag("instruction_override", _excerpt(candidate, *match.span()))
            if (match := _COMPACT_OVERRIDE.search(re.sub(r"[^a-z]", "", candidate))) is not None:
                flag("instruction_override", f"spelled out: {match.group(0)}")
        if (match := _COMPACT_OVERRIDE.search(compact)) is not None:
            flag("instruction_override", f"spelled out: {match.group(0)}")
        for pattern in _ROLE:
            if (match := pattern.search(text)) is not None:
                flag("role_marker", _excerpt(text, *match.span()))
                break
        if self._tools is not None and (match := self._tools.search(text)) is not None:
            flag("tool_name", f"names the tool {match.group(0)}")
        elif (match := _CALL_SYNTAX.search(text)) is not None:
            flag("tool_name", f"call syntax {_excerpt(text, *match.span())}")
        if passage:
            for pattern in _PASSAGE_ORDERS:
                if (match := pattern.search(flat)) is not None:
                    flag("instruction_override", _excerpt(flat, *match.span()))
            for match in itertools.chain(_SECRET_REQUEST.finditer(flat), _CODE_REQUEST.finditer(flat)):
                if not _NEGATION.search(flat[max(0, match.start() - 40) : match.end()]):  # "we will never ask for your PIN"
                    flag("verification_bypass", f"asks for secrets: {_excerpt(flat, *match.span())}")
                    break
            if (match := _BYPASS_STATEMENT.search(flat)) is not None:
                flag("verification_bypass", f"states a way around verification: {_excerpt(flat, *match.span())}")
            return flags
        for pattern in _BYPASS:
            for candidate in (flat, text.lower()):
                if (match := pattern.search(candidate)) is not None:
                    flag("verification_bypass", _excerpt(candidate, *match.span()))
        if (match := _OTHER_PARTY.search(flat)) is not None:
            flag("cross_account", _excerpt(flat, *match.span()))
        elif requester and _ACCOUNT_WORDS.search(flat):
            named = {e.lower() for e in _EMAIL.findall(text)}
            if named and requester.lower() not in named:
                flag("cross_account", f"asks about {len(named)} address(es), none of them the requester's")
        return flags
