"""What every tool is: a name, a typed input and output, a side-effect flag and `invoke`.

The executor is the only caller. It validates arguments against `input_model` before
`invoke`, passes an idempotency key for side effects, and maps `ToolError.kind` to
retry (`transient`), escalate (`denied`) or fail (`permanent`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

ToolErrorKind = Literal["transient", "permanent", "denied"]

InputT = TypeVar("InputT", bound=BaseModel)
OutputT = TypeVar("OutputT", bound=BaseModel)


class ToolModel(BaseModel):
    """Base for tool inputs and outputs: strict about unknown fields, plain JSON values."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolInput(ToolModel):
    """Base for tool inputs: also strict about types (no "5" for 5, no 5 for "5"), because
    arguments come from plans and a silently coerced value is a different request."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def derived_id(prefix: str, idempotency_key: str) -> str:
    """A short, stable id for what one idempotency key produced (same key, same id)."""
    return f"{prefix}_{hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]}"


class ToolError(Exception):
    """A tool failure the executor knows how to handle."""

    def __init__(
        self,
        kind: ToolErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ToolErrorKind = kind
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "status_code": self.status_code}


@dataclass(frozen=True)
class ToolContext:
    """Who is calling and under which key; tools must treat the same key as the same request."""

    run_id: str
    step_id: str
    idempotency_key: str


class Tool(ABC, Generic[InputT, OutputT]):
    """A typed operation. Subclasses set the class attributes and implement `invoke`."""

    name: ClassVar[str]
    description: ClassVar[str]
    input_model: ClassVar[type[BaseModel]]
    output_model: ClassVar[type[BaseModel]]
    side_effects: ClassVar[bool]
    adapter: str = "local"  # what serves the tool (sandbox, zendesk, okta, ...); shown by `tools list`
    # True when the tool waits on nothing outside this process and its own databases (the
    # sandbox, the embedded index): the executor then calls it directly, because a timeout
    # thread could not stop such work and its hand-off cost more than the call (bench.orchestration).
    in_process: bool = False

    @abstractmethod
    def invoke(self, args: InputT, ctx: ToolContext) -> OutputT:
        """Do the work once per idempotency key; raise `ToolError` on failure."""

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: what `caseplan tools list` prints."""
        return {
            "name": self.name,
            "description": self.description,
            "side_effects": self.side_effects,
            "adapter": self.adapter,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_model.model_json_schema(),
        }


def first_problem(exc: ValidationError, whole: str = "body") -> str:
    """A validation failure in one line: where the first problem is, what it is, how many more
    (`whole` names the location when the problem is with the value as a whole)."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or whole
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"
