"""structlog set-up: readable lines on a terminal, one JSON object per line otherwise."""

from __future__ import annotations

import logging
import sys

import structlog

from agent.settings import LoggingSettings
from policies.pii import PII_KINDS, MaskingFilter, masking_processor


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    """Bind to whatever sys.stderr is when a message is logged (tests and servers swap it)."""
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(
    settings: LoggingSettings, *, force_json: bool = False, mask_kinds: tuple[str, ...] | list[str] = PII_KINDS
) -> None:
    """Route structlog and stdlib logging to stderr in the configured format, PII masked
    (`mask_kinds`, from the `pii.logs` setting) before anything is written."""
    level = logging.getLevelName(settings.level.upper())
    if not isinstance(level, int):
        level = logging.WARNING
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
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, MaskingFilter)]:
            handler.removeFilter(old)
        if mask_kinds:
            handler.addFilter(MaskingFilter(mask_kinds))
