"""The customer-facing reply, built only from the plan and what the tools returned.

Text replies fill placeholders from step outputs; knowledge replies quote retrieved passages
with their citation ids. With nothing to ground an answer on, there is no reply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from plans.models import Plan
from plans.refs import lookup_path

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
MAX_PASSAGES = 2
RELATIVE_FLOOR = 0.75  # a second passage must score at least this share of the best one


class Reply(BaseModel):
    text: str
    citations: list[str] = []


def _fill(text: str, plan: Plan, outputs: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        parts = match.group(1).strip().split(".")
        if parts[0] == "slots":
            return str(plan.slots.get(parts[1], ""))
        return str(lookup_path(outputs[parts[1]], tuple(parts[3:])))

    return " ".join(_PLACEHOLDER.sub(value, text).split())


def compose_reply(plan: Plan, outputs: Mapping[str, Any]) -> Reply | None:
    """The reply for a finished plan, or None when there is nothing grounded to say."""
    if plan.reply.kind == "none":
        return Reply(text="")
    if plan.reply.kind == "text":
        return Reply(text=_fill(plan.reply.text, plan, outputs))
    passages = outputs.get(plan.reply.search_step, {}).get("passages", [])
    if not passages:
        return None
    top = passages[0]["score"]
    chosen = [p for p in passages[:MAX_PASSAGES] if p["score"] >= RELATIVE_FLOOR * top]
    lines = ["Here is what our help centre says:"]
    for passage in chosen:
        lines.append(f"{passage['text']} [{passage['citation_id']}]")
    return Reply(text="\n\n".join(lines), citations=[p["citation_id"] for p in chosen])
