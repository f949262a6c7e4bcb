"""What CLI commands share: lazy settings and runtime, and one way to report bad input (exit 2)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NoReturn

import typer

from agent.integrity import RecordError
from agent.logging import configure_logging
from agent.record import UnknownRunError
from agent.settings import ConfigError, Settings, load_settings
from agent.tickets import TicketError
from plans.catalogue import CatalogueError, UnknownTemplateError
from policies.loader import PolicyError
from tools.registry import UnknownToolError

USAGE_ERROR = 2
FOUND_PROBLEMS = 1  # audit verify / replay: tampering or divergence found

# Errors whose message already explains the problem to the user.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    TicketError,
    CatalogueError,
    UnknownTemplateError,
    PolicyError,
    UnknownRunError,
    UnknownToolError,
    RecordError,
)


@dataclass
class State:
    config_path: str | None = None
    _runtime: Any = field(default=None, repr=False)

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings(self.config_path)
        configure_logging(settings.logging, mask_kinds=settings.pii.logs)
        return settings

    def runtime(self) -> Any:
        """The assembled runtime; imported lazily so light commands start fast."""
        if self._runtime is None:
            from agent.runtime import Runtime

            self._runtime = Runtime.build(self.settings)
        return self._runtime


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def with_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Expected errors become `error: ...` lines on stderr and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EXPECTED_ERRORS as exc:
            lines = [line for line in str(exc).strip().splitlines() if line] or [type(exc).__name__]
            for line in lines:
                typer.echo(f"error: {line}", err=True)
            raise typer.Exit(USAGE_ERROR) from None

    return wrapper


def state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
