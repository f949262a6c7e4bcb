"""PII detection and masking for logs, the run record and text sent to the API model.

Emails, phone numbers, payment card numbers (Luhn-checked), IBANs (mod-97 checked) and
national-id-like numbers (US SSN shape) are replaced by typed placeholders that keep a short
stable fingerprint, so the same value masks the same way and an auditor can still follow it
across events without seeing it.

The fingerprint is keyed (HMAC-SHA256 under the PII fingerprint key): a plain digest of a short
value (an SSN has 10^9 candidates, a phone number not many more) is reversed by trying them all,
by anyone who reads a log, the record or what the API model was sent. The process is given its
key once at start-up (`use_fingerprint_key`); until then a random one stands in, so
placeholders never reveal a value, they only stop matching other processes'.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

PII_KINDS = ("email", "card", "iban", "national_id", "phone")


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        value = int(char)
        if index % 2 == parity:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _iban_ok(raw: str) -> bool:
    compact = raw.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


# "2026-11-25 11:44" has a phone number's shape; a timestamp in a log line is not one.
_ISO_DATE = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])(?!\d)")


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool]


_DETECTORS = (
    _Detector(
        "email",
        re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"),
        lambda _: True,
    ),
    _Detector(
        "iban",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b"),
        _iban_ok,
    ),
    _Detector(
        "card",
        re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)"),
        lambda raw: _luhn_ok(re.sub(r"\D", "", raw)),
    ),
    _Detector("national_id", re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)"), lambda _: True),
    _Detector(
        "phone",
        re.compile(r"(?<![\w@+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?)?\d{2,4}(?:[\s.-]\d{2,5}){1,4}(?![\w@])"),
        lambda raw: 9 <= len(re.sub(r"\D", "", raw)) <= 15 and not _ISO_DATE.match(raw),
    ),
)


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str


# Every detector needs an "@" or a digit: text with neither (most record strings: statuses,
# tool names, prose) is cleared by one scan instead of one per detector.
_MAY_HOLD_PII = re.compile(r"[@\d]")


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> list[Finding]:
    """Non-overlapping findings, earlier detectors (email, IBAN, card) winning overlaps."""
    if not _MAY_HOLD_PII.search(text):
        return []
    wanted = set(kinds)
    taken: list[Finding] = []
    for detector in _DETECTORS:
        if detector.kind not in wanted:
            continue
        for match in detector.pattern.finditer(text):
            start, end = match.span()
            if any(start < f.end and f.start < end for f in taken):
                continue
            if detector.check(match.group(0)):
                taken.append(Finding(detector.kind, start, end, match.group(0)))
    return sorted(taken, key=lambda f: f.start)


_fingerprint_key = os.urandom(32)


def use_fingerprint_key(key: bytes) -> None:
    """Fingerprint with `key` from now on in this process (every process of one deployment
    shares it, so one value masks the same way in logs and records everywhere)."""
    global _fingerprint_key
    if len(key) < 16:
        raise ValueError("a PII fingerprint key needs at least 16 bytes")
    _fingerprint_key = key


def placeholder(kind: str, value: str) -> str:
    digest = hmac.new(_fingerprint_key, value.strip().lower().encode(), hashlib.sha256).hexdigest()[:8]
    return f"[{kind}:{digest}]"


def mask_text(text: str, kinds: Iterable[str] = PII_KINDS) -> str:
    """Replace every finding with its typed placeholder."""
    findings = find_pii(text, kinds)
    if not findings:
        return text
    parts, cursor = [], 0
    for finding in findings:
        parts.append(text[cursor : finding.start])
        parts.append(placeholder(finding.kind, finding.value))
        cursor = finding.end
    parts.append(text[cursor:])
    return "".join(parts)


def mask_data(value: Any, kinds: Iterable[str] = PII_KINDS) -> Any:
    """Mask every string inside JSON-like data (keys are kept)."""
    kinds = tuple(kinds)
    if isinstance(value, str):
        return mask_text(value, kinds)
    if isinstance(value, dict):
        return {key: mask_data(item, kinds) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_data(item, kinds) for item in value]
    return value


def masking_processor(kinds: Iterable[str] = PII_KINDS) -> Callable[[Any, str, dict[str, Any]], dict[str, Any]]:
    """A structlog processor that masks every string in a log event before it is rendered."""
    kinds = tuple(kinds)

    def mask_event(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
        return {key: mask_data(value, kinds) if isinstance(value, (str, dict, list, tuple)) else value for key, value in event.items()}

    return mask_event


class MaskingFilter(logging.Filter):
    """The same for stdlib log records (third-party libraries), applied at the handler."""

    def __init__(self, kinds: Iterable[str] = PII_KINDS) -> None:
        super().__init__()
        self.kinds = tuple(kinds)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.kinds:
            record.msg, record.args = mask_text(url_decoded(record.getMessage()), self.kinds), None
            if record.exc_info or record.exc_text:  # the traceback's text is printed too (another handler may have cached it)
                record.exc_text = mask_text(record.exc_text or logging.Formatter().formatException(record.exc_info), self.kinds)
        return True


def url_decoded(text: str) -> str:
    """`text` with %XX escapes decoded when that is all that hid a finding (an access log's
    path writes "@" as "%40"); otherwise unchanged."""
    if "%" not in text:
        return text
    decoded = unquote(text)
    return decoded if find_pii(decoded) else text
