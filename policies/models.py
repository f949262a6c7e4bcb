"""The policy language: what a policy file may say, validated by Pydantic.

A file has per-tool base decisions, rules with conditions (the strictest of the base decision
and every matching rule holds), preconditions that tie a step to the verified output of an earlier one,
rate limits, a routing threshold, topics that always go to a person, and guard settings.
Checks that need the tool registry or the catalogue live in `policies.loader`.
"""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Decision = Literal["allow", "deny", "needs_approval"]
STRICTNESS: dict[str, int] = {"allow": 0, "needs_approval": 1, "deny": 2}
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Scalar = str | int | float | bool | None
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeWindow(_Strict):
    """Local clock times [start, end) on the given days; a window may wrap past midnight."""

    start: time
    end: time
    tz: str = "UTC"
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _clock_text(cls, value: object) -> object:
        """"HH:MM" in quotes: YAML reads an unquoted 20:00 as the number 1200 (base 60), which
        would become 00:20 UTC, and a time with a zone cannot be compared with the local clock."""
        if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}(:\d{2})?", value.strip()):
            raise ValueError(f"write clock times as quoted \"HH:MM\" text (got {value!r}); the zone goes in tz")
        return value.strip()

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> TimeWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window can never match")
        return self


class Condition(_Strict):
    """All given fields must hold; an empty condition always holds."""

    templates: list[str] | None = Field(None, min_length=1)
    templates_not: list[str] | None = Field(None, min_length=1)
    customer_tier: list[str] | None = Field(None, min_length=1)
    tags_any: list[str] | None = Field(None, min_length=1)
    channel: list[str] | None = Field(None, min_length=1)
    side_effects_min: int | None = Field(None, ge=0)
    side_effects_max: int | None = Field(None, ge=0)
    within: TimeWindow | None = None
    outside: TimeWindow | None = None
    args: dict[str, list[Scalar]] | None = None

    @model_validator(mode="after")
    def _possible(self) -> Condition:
        low, high = self.side_effects_min, self.side_effects_max
        if low is not None and high is not None and low > high:
            raise ValueError(f"side_effects_min ({low}) is above side_effects_max ({high}): the condition can never match")
        if self.within is not None and self.within == self.outside:
            raise ValueError("within and outside name the same window: the condition can never match")
        if both := sorted(set(self.templates or []) & set(self.templates_not or [])):
            raise ValueError(f"{both[0]!r} is in both templates and templates_not: the condition can never match")
        for name, values in (self.args or {}).items():
            if not values:
                raise ValueError(f"args.{name} lists no values: the condition can never match")
        return self


class ToolRule(_Strict):
    """The base decision for one tool."""

    decision: Decision = "allow"


class Rule(_Strict):
    """A decision for steps that match; with the tool's base decision and every other matching
    rule, preconditions and limits, the strictest wins."""

    id: RuleId
    tools: list[str] = Field(min_length=1)  # "*" matches every tool
    when: Condition = Condition()
    decision: Decision
    reason: str = Field(min_length=1, max_length=300)


class Precondition(_Strict):
    """`tool` may run only after an earlier `after` step whose output backs this step's arguments."""

    id: RuleId
    tool: str
    after: str
    match: dict[str, str] = {}  # this step's argument -> that step's output field; values must be equal
    expect: dict[str, Scalar] = {}  # that step's output field -> the value it must have
    owner_field: str | None = None  # that step's output field that must equal the ticket's authenticated requester
    own_ticket_arg: str | None = None  # this argument equal to the handled ticket's own id satisfies it without `after`
    reason: str = Field(min_length=1, max_length=300)


MAX_WINDOW_S = 366 * 86400  # a year and a day: past it, a limit is a ban, not a rate


class RateLimit(_Strict):
    """At most `limit` runs of `tool` per requester, per account or in all, in a sliding window."""

    id: RuleId
    tool: str
    per: Literal["requester", "account", "tool"]
    account_arg: str = "user_id"  # the tool argument naming the account, for per: account
    limit: int = Field(ge=1)
    window: str

    @field_validator("window")
    @classmethod
    def _duration(cls, value: str) -> str:
        found = _DURATION.match(value.strip())
        if not found or int(found.group(1)) == 0:
            raise ValueError("a window is a positive number with a unit s, m, h or d (e.g. 1d, 12h)")
        if int(found.group(1)) * _UNIT_SECONDS[found.group(2)] > MAX_WINDOW_S:
            raise ValueError("a window is at most 366d")
        return value.strip()

    @property
    def window_s(self) -> int:
        amount, unit = _DURATION.match(self.window).groups()
        return int(amount) * _UNIT_SECONDS[unit]


class Topic(_Strict):
    """Tickets that mention any phrase go to a person, whatever else matches."""

    id: RuleId
    phrases: list[Annotated[str, StringConstraints(min_length=2, max_length=100)]] = Field(min_length=1)
    reason: str = Field(min_length=1, max_length=300)


class Routing(_Strict):
    min_confidence: float = Field(0.0, ge=0, le=1)


InputDetector = Literal[
    "control_chars",
    "mixed_script",
    "encoded_payload",
    "instruction_override",
    "role_marker",
    "tool_name",
    "cross_account",
    "verification_bypass",
]


class InputGuard(_Strict):
    enabled: bool = True
    detectors: list[InputDetector] = list(InputDetector.__args__)  # type: ignore[attr-defined]
    max_chars: int = Field(20000, ge=100)
    flagged_allow: list[str] = ["escalate_to_human"]  # side-effecting tools a flagged ticket may still use


class OutputGuard(_Strict):
    enabled: bool = True
    min_support: float = Field(0.6, gt=0, le=1)  # share of a sentence's content words a cited passage must contain


class PolicyFile(_Strict):
    version: Literal[1]
    default: Decision | None = None
    tools: dict[str, ToolRule] = {}
    rules: list[Rule] = []
    preconditions: list[Precondition] = []
    rate_limits: list[RateLimit] = []
    routing: Routing | None = None
    human_topics: list[Topic] = []
    input_guard: InputGuard | None = None
    output_guard: OutputGuard | None = None
