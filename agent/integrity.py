"""Tamper evidence for the run record: hash chains, the root hash that seals a finished run,
and the checks `audit verify` runs.

Each event's hash covers the previous event's hash, so an edit, a deletion or a reordering
breaks the chain at a named event. The root hash, written when the run finishes, covers the
last event's hash and the run's outcome, so deleting trailing events or editing the run row
shows too. A plain sha256 chain can be recomputed by anyone who can write to the database;
with a signing key configured the chain is HMAC-SHA256, which they cannot forge.

The checks are pure functions over plain data, so they run the same on the database and on
an export file.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from plans.models import canonical_json

GENESIS_HASH = "0" * 64
RECORD_VERSION = 3
"""Format of runs written now. 1: sha256 chain, root hash = last event hash (caseplan 0.1).
2: chain bound to the run id and the versions behind each event, sha256 or HMAC-SHA256, PII
masked, root hash sealing the run outcome. 3: the seal also covers when the run arrived and the
ticket id it handled (moved, a run drops out of an auditor's date range unseen)."""
SUPPORTED_RECORD_VERSIONS = (1, 2, 3)
PLAIN_CHAIN = "sha256"
HMAC_CHAIN = "hmac-sha256"
FINISHED_STATUSES = ("completed", "escalated", "failed")
UNFINISHED_STATUSES = ("received", "running", "waiting_approval")


class RecordError(ValueError):
    """A record caseplan cannot read or check as asked; the message says what to do."""


class KeyUnavailable(RecordError):
    """The run was protected with a key this process does not have."""


class RunInProgress(RecordError):
    """The run has not finished, so it has no root hash to check and nothing final to replay."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run {run_id} is still in progress (status {status}); check it once it has finished")


def key_fingerprint(key: bytes) -> str:
    """A short public id for a key, so a record names the key it needs without revealing it."""
    return hashlib.sha256(b"caseplan-record-key\x00" + key).hexdigest()[:12]


class Signer:
    """Plain sha256, or HMAC-SHA256 under a signing key. `chain` names which (and which key)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key
        self.chain = f"{HMAC_CHAIN}:{key_fingerprint(key)}" if key else PLAIN_CHAIN

    def digest(self, text: str) -> str:
        data = text.encode("utf-8")
        if self._key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()


class Keyring:
    """The signer new runs are written with, and the signers that can check existing ones."""

    def __init__(self, signing_key: bytes | None = None, key_env: str = "the signing key variable") -> None:
        self.writer = Signer(signing_key)
        self.key_env = key_env
        self._by_chain = {PLAIN_CHAIN: Signer(None), self.writer.chain: self.writer}

    def signer_for(self, run_id: str, chain: str) -> Signer:
        signer = self._by_chain.get(chain)
        if signer is not None:
            return signer
        if not chain.startswith(f"{HMAC_CHAIN}:"):
            raise RecordError(f"run {run_id}: unknown hash chain {chain!r}")
        needed = chain.split(":", 1)[1]
        if self.writer.chain == PLAIN_CHAIN:
            raise KeyUnavailable(f"run {run_id} is signed (HMAC-SHA256, key id {needed}); set {self.key_env} to check or extend it")
        have = self.writer.chain.split(":", 1)[1]
        raise KeyUnavailable(f"run {run_id} is signed with key id {needed}, but {self.key_env} holds key id {have}")


def stamp(at: datetime) -> str:
    """One text form for a timestamp whatever the database gave back (aware or naive UTC)."""
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_digest(
    signer: Signer,
    prev_hash: str,
    run_id: str,
    seq: int,
    kind: str,
    node: str,
    payload: Any,
    versions: dict[str, Any] | None,
    at: datetime,
) -> str:
    body = {"run": run_id, "seq": seq, "kind": kind, "node": node, "payload": payload, "versions": versions, "at": stamp(at)}
    return signer.digest(prev_hash + canonical_json(body))


def root_digest(signer: Signer, last_hash: str, outcome: dict[str, Any]) -> str:
    return signer.digest(last_hash + canonical_json(outcome))


def legacy_event_hash(prev_hash: str, seq: int, kind: str, node: str, payload: Any, at: datetime) -> str:
    """Record format 1 (caseplan 0.1): sha256 over seq, kind, node, payload and the aware timestamp."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    body = canonical_json({"seq": seq, "kind": kind, "node": node, "payload": payload, "at": at.isoformat()})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


class RecordedEvent(BaseModel):
    """One stored event as read back, payload masked. `payload_error` says why it could not be read."""

    seq: int
    kind: str
    node: str
    payload: Any = None
    versions: dict[str, Any] | None = None
    created_at: datetime
    prev_hash: str
    hash: str
    payload_error: str | None = None


class RecordedRun(BaseModel):
    """A run and its events exactly as stored: what verification and export work on."""

    id: str
    status: str
    record_version: int
    chain: str
    root_hash: str | None = None
    ticket: Any = None
    ticket_id: str | None = None
    template: str | None = None
    plan_hash: str | None = None
    route: Any = None
    reply: str | None = None
    escalation_reason: str | None = None
    error: str | None = None
    versions: Any = None
    created_at: datetime
    updated_at: datetime
    events: list[RecordedEvent] = []
    # Why the stored rows could not be read as caseplan writes them (a time, number or status
    # column edited outside caseplan); such a run is reported, not loaded. Never exported.
    load_error: str | None = Field(default=None, exclude=True)

    @property
    def in_progress(self) -> bool:
        """Still going: an unfinished status and no seal. A sealed run whose status says it is
        still going, or a status caseplan never writes, is checked (and found changed), never
        skipped as in progress."""
        return self.status in UNFINISHED_STATUSES and self.root_hash is None


def run_outcome(run_id: str, fields: dict[str, Any], last_seq: int, record_version: int, chain: str) -> dict[str, Any]:
    """What the root hash seals besides the chain: the run row an auditor reads first
    (`fields["created_at"]` a datetime)."""
    keys = ("status", "ticket", "template", "plan_hash", "route", "reply", "escalation_reason", "error", "versions")
    outcome = {"run": run_id, "events": last_seq, "record_version": record_version, "chain": chain} | {k: fields.get(k) for k in keys}
    if record_version >= 3:
        outcome |= {"ticket_id": fields.get("ticket_id"), "created_at": stamp(fields["created_at"])}
    return outcome


Problem = Literal["unreadable", "missing_event", "broken_link", "hash_mismatch", "root_mismatch", "no_root", "unsigned", "bad_status", "downgraded"]


class Finding(BaseModel):
    """One thing wrong with a stored run, naming the run and, where it can, the event."""

    run_id: str
    problem: Problem
    seq: int | None = None
    kind: str | None = None
    message: str


def check_run(run: RecordedRun, signer_for: Callable[[str, str], Signer], require_signed: bool = False) -> list[Finding]:
    """Every integrity problem of one run, in event order (empty: it verifies). A run still in
    progress has no seal yet: its events so far are checked."""
    if run.record_version not in SUPPORTED_RECORD_VERSIONS:
        raise RecordError(
            f"run {run.id} uses record format {run.record_version}; this caseplan reads formats "
            f"{SUPPORTED_RECORD_VERSIONS[0]}-{SUPPORTED_RECORD_VERSIONS[-1]}: upgrade caseplan to check it"
        )
    legacy = run.record_version == 1
    signer = None if legacy else signer_for(run.id, run.chain)
    findings: list[Finding] = []

    def found(problem: Problem, message: str, event: RecordedEvent | None = None, *, named: bool = True) -> None:
        """`named`: the message starts with the event; otherwise the event is only attached."""
        where = f"run {run.id}" + (f" event {event.seq} ({event.kind})" if event and named else "")
        findings.append(
            Finding(
                run_id=run.id,
                problem=problem,
                seq=event.seq if event else None,
                kind=event.kind if event else None,
                message=f"{where}: {message}",
            )
        )

    if legacy and run.chain != PLAIN_CHAIN:
        found("downgraded", f"is labelled record format 1, which had only plain sha256 chains, yet its chain says {run.chain[:40]!r}: rewritten as an old-format run")
    if not run.in_progress:  # with no seal yet, the status may still say so
        if run.status in UNFINISHED_STATUSES:
            found("bad_status", f"is sealed, yet its status says {run.status!r}: the status was changed after the run finished")
        elif run.status not in FINISHED_STATUSES:
            found("bad_status", f"has status {run.status[:40]!r}, which caseplan never writes")
    if require_signed and (legacy or run.chain == PLAIN_CHAIN):
        found("unsigned", "is not HMAC-signed, and signatures are required (a plain chain can be recomputed by anyone with write access)")
    previous, expected = GENESIS_HASH, 1
    for event in run.events:
        if event.seq != expected:
            if event.seq < expected:
                found("missing_event", f"is out of order ({expected} was due): inserted or renumbered?", event)
            else:
                missing = f"event {expected}" if event.seq == expected + 1 else f"events {expected}-{event.seq - 1}"
                found("missing_event", f"{missing} missing before it (deleted?)", event)
        if event.prev_hash != previous:
            found("broken_link", "does not link to the event before it (events reordered, inserted or deleted)", event)
        if event.payload_error is not None:
            found("unreadable", f"payload is unreadable ({event.payload_error}): truncated or corrupted", event)
        else:
            if legacy:
                recomputed = legacy_event_hash(event.prev_hash, event.seq, event.kind, event.node, event.payload, event.created_at)
            else:
                recomputed = event_digest(
                    signer, event.prev_hash, run.id, event.seq, event.kind, event.node, event.payload, event.versions, event.created_at
                )
            if recomputed != event.hash:
                rewritten = " or rewritten without the signing key" if signer and signer.chain != PLAIN_CHAIN else ""
                found("hash_mismatch", f"hash does not match its contents (payload, kind, node or time edited{rewritten})", event)
        previous, expected = event.hash, event.seq + 1
    last = run.events[-1] if run.events else None
    if run.in_progress:
        return findings
    if run.root_hash is None:
        found("no_root", "finished but has no root hash (never sealed, or the root hash was removed)", last, named=False)
    else:
        if legacy:
            sealed = previous
        else:
            fields = run.model_dump(mode="json") | {"created_at": run.created_at}
            outcome = run_outcome(run.id, fields, last.seq if last else 0, run.record_version, run.chain)
            sealed = root_digest(signer, previous, outcome)
        if sealed != run.root_hash:
            tail = f"the chain ending at event {last.seq} ({last.kind})" if last else "an empty chain"
            found(
                "root_mismatch",
                f"root hash does not match {tail} and the run's outcome: events after it were deleted, "
                "or the root hash or the run row was changed",
                last,
                named=False,
            )
    return findings
