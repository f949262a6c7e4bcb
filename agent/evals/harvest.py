"""The flywheel: resolved escalations and rejected approvals, where a person recorded the correct
outcome, become eval cases, de-duplicated and with PII masked.

PII is masked the way the run record masks it (`[email:1a2b3c4d]`), and masked email addresses
become pseudonyms (`customer-1a2b3c4d@example.invalid`) so that slot filling and identity checks
still see "an address, the same one as before", never the customer's own.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from agent.evals.cases import CaseFileError, EvalCase
from agent.evals.outcomes import EvalOutcome
from agent.record import Approval, Run
from plans.models import canonical_json
from policies.pii import PII_KINDS, mask_data
from tools.escalation import Escalation
from tools.safe_parse import line_items, load_json

MAX_CASE_LINE_BYTES = 1024 * 1024  # one case per line; a ticket is at most a few tens of KB

_EMAIL_PLACEHOLDER = re.compile(r"\[email:([0-9a-f]{8})\]")
_TICKET_FIELDS = ("text", "subject", "requester_email", "tags", "customer_tier", "channel")


class HarvestResult(BaseModel):
    cases: list[EvalCase] = []
    duplicates: int = 0
    unlabelled: list[str] = []  # run ids a person resolved or rejected without recording the outcome


def pseudonymise(value: Any) -> Any:
    """Mask PII, then turn email placeholders into stable, valid, undeliverable addresses."""
    masked = mask_data(value, PII_KINDS)
    if isinstance(masked, str):
        return _EMAIL_PLACEHOLDER.sub(lambda m: f"customer-{m.group(1)}@example.invalid", masked)
    if isinstance(masked, dict):
        return {key: pseudonymise(item) for key, item in masked.items()}
    if isinstance(masked, list):
        return [pseudonymise(item) for item in masked]
    return masked


def _case(run: Run, outcome: EvalOutcome, origin: str) -> EvalCase:
    ticket = pseudonymise({key: run.ticket[key] for key in _TICKET_FIELDS if run.ticket.get(key) not in (None, [], "")})
    expect: dict[str, Any] = {"template": outcome.template}
    if outcome.escalation_reason:
        expect["escalation_reason"] = outcome.escalation_reason
    if outcome.slots:
        expect["slots"] = pseudonymise(outcome.slots)
    if outcome.forbidden_tools:
        expect["forbidden_tools"] = list(outcome.forbidden_tools)
    digest = hashlib.sha256(canonical_json([ticket, expect]).encode()).hexdigest()[:12]
    return EvalCase.model_validate(
        {"id": f"harvest-{digest}", "ticket": ticket, "expect": expect, "tags": ["harvested", origin], "source": f"run {run.id}"}
    )


def existing_ids(path: Path) -> set[str]:
    """The case ids already in `path`, read line by line. A text line that is not a case is
    passed over (it holds no id to avoid); bytes that are not UTF-8 text, or a line too long for
    a case, mean this is not a cases file, and nothing is appended to it."""
    if not path.exists():
        return set()
    ids = set()
    try:
        for _, line in line_items(path, MAX_CASE_LINE_BYTES):
            if isinstance(line, ValueError):
                raise CaseFileError(f"{path}: cannot read it as a JSONL file of cases ({line})")
            try:
                found = load_json(line)["id"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if isinstance(found, str):
                ids.add(found)
    except OSError as exc:
        raise CaseFileError(f"{path}: cannot read it as a JSONL file of cases ({exc.strerror or exc})") from None
    return ids


def harvest(engine: Engine, since: datetime, known_ids: set[str]) -> HarvestResult:
    """Cases from runs since `since` whose escalation was resolved or approval rejected."""
    result = HarvestResult()
    with Session(engine) as session:
        resolved = {row.run_id for row in session.exec(select(Escalation).where(Escalation.status == "resolved"))}
        rejected = {row.run_id for row in session.exec(select(Approval).where(Approval.status == "rejected"))}
        runs = session.exec(select(Run).where(Run.id.in_(sorted(resolved | rejected)), Run.created_at >= since).order_by(Run.created_at)).all()
        outcomes = {row.run_id: row for row in session.exec(select(EvalOutcome).where(EvalOutcome.run_id.in_([r.id for r in runs])))}
    seen = set(known_ids)
    for run in runs:
        outcome = outcomes.get(run.id)
        if outcome is None:
            result.unlabelled.append(run.id)
            continue
        case = _case(run, outcome, "escalation" if run.id in resolved else "approval")
        if case.id in seen:
            result.duplicates += 1
            continue
        seen.add(case.id)
        result.cases.append(case)
    return result
