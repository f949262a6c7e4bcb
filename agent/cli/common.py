"""What CLI commands share: lazy settings and runtime, and one way to report bad input (exit 2)."""

from __future__ import annotations

import functools
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Any, NoReturn

import typer

from agent.db import UNUSABLE_ERRORS, DatabaseUrlError, unavailable_reason
from agent.integrity import RecordError
from agent.keyfile import use_configured_fingerprint_key
from agent.logging import configure_logging
from agent.record import UnknownRunError
from agent.settings import ConfigError, Settings, load_settings
from agent.tickets import TicketError
from plans.catalogue import CatalogueError, UnknownTemplateError
from policies.loader import PolicyError
from tools.knowledge.errors import KnowledgeIndexError
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
    KnowledgeIndexError,
    DatabaseUrlError,
)


@dataclass
class State:
    config_path: str | None = None
    _runtime: Any = field(default=None, repr=False)

    @cached_property
    def settings(self) -> Settings:
        settings = load_settings(self.config_path)
        use_configured_fingerprint_key(settings, create=False)  # the runtime makes it when missing
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
        except UNUSABLE_ERRORS as exc:  # unreachable, locked, or a file that is not a database
            fail(f"the database cannot be used ({unavailable_reason(exc)}); check database.url or CASEPLAN__DATABASE__URL")

    return wrapper


def _stores(settings: Settings) -> tuple[list[Path], list[Path]]:
    """caseplan's own files and folders under this configuration: never an output target."""
    files = [settings.checkpoint_path, settings.vault_key_path, settings.fingerprint_key_path]
    for url in (settings.database_url, settings.sandbox_url):
        if url.startswith("sqlite:///"):
            files.append(Path(url.removeprefix("sqlite:///")))
    files += [Path(f"{f}{suffix}") for f in list(files) for suffix in ("-wal", "-shm", "-journal")]
    return [f.expanduser().resolve() for f in files], [settings.knowledge_path.expanduser().resolve()]


def output_file(path: Path, settings: Settings) -> Path:
    """A file a command may write, checked before the command does any work: not one of
    caseplan's stores (an export aimed at the database would destroy it), not a folder, in a
    folder that exists."""
    target = path.expanduser().resolve()
    files, folders = _stores(settings)
    if target in files or any(folder == target or folder in target.parents for folder in folders):
        fail(f"{path} is where caseplan keeps its own data; write somewhere else")
    if target.is_dir():
        fail(f"{path} is a folder; give a file name")
    if path.exists() and not path.is_file():  # /dev/null, /dev/stdout, a FIFO: replacing them would break them
        fail(f"{path} is not a regular file (a device, pipe or socket); give a file name")
    if not target.parent.is_dir():
        fail(f"{path}: the folder {target.parent} does not exist")
    return target


def output_folder(path: Path) -> Path:
    """A folder a command will write reports into: created now, so a bad path fails before the
    work rather than after it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        fail(f"{path} is a file; give a folder")
    except OSError as exc:
        fail(f"{path}: cannot create the folder ({exc.strerror or exc})")
    return path


@contextmanager
def atomic_write(path: Path) -> Iterator[IO[str]]:
    """Write to a temporary file beside `path` and move it into place only when the block
    succeeds: a failed or interrupted export leaves the earlier file as it was. A file replaced
    keeps its permissions; a new one is readable by its owner only."""
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        fail(f"{path}: cannot write in {path.parent} ({exc.strerror or exc})")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            yield out
        if path.exists():
            os.chmod(temporary, stat.S_IMODE(path.stat().st_mode))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
