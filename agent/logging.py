"""structlog set-up: readable lines on a terminal, one JSON object per line otherwise, for
caseplan's own events and for the standard-library loggers of the libraries it runs (uvicorn,
alembic, httpx) alike, all PII-masked."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import structlog

from agent.settings import LoggingSettings
from policies.pii import PII_KINDS, MaskingFilter, masking_processor


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    """Bind to whatever sys.stderr is when a message is logged (tests and servers swap it)."""
    return structlog.PrintLogger(file=sys.stderr)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (tests and servers swap it)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN202
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _JsonFormatter(logging.Formatter):
    """A stdlib record as the same one-line JSON object structlog writes."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "event": record.getMessage(),
            "logger": record.name,
            "level": record.levelname.lower(),
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


def configure_logging(
    settings: LoggingSettings, *, force_json: bool = False, mask_kinds: tuple[str, ...] | list[str] = PII_KINDS
) -> None:
    """Route structlog and stdlib logging to stderr in the configured format, PII masked
    (`mask_kinds`, from the `pii.logs` setting) before anything is written."""
    level = logging.getLevelNamesMapping()[settings.level]
    as_json = force_json or settings.format == "json" or (
        settings.format == "auto" and not sys.stderr.isatty()
    )
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *([masking_processor(mask_kinds)] if mask_kinds else []),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    for old in [handler for handler in root.handlers if isinstance(handler, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(_JsonFormatter() if as_json else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    if mask_kinds:
        handler.addFilter(MaskingFilter(mask_kinds))
    root.addHandler(handler)
    root.setLevel(level)
