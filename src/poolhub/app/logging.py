"""structlog set-up: JSON lines when not on a terminal, readable console output otherwise."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any
from urllib.parse import unquote_plus

import structlog

_SECRET_KEYS = frozenset(
    {"authorization", "session_token", "api_key", "token", "password", "x-api-key", "cookie"}
)
_SECRET_NAMES = frozenset({"session_token", "api_key", "token", "password", "access_token"})
# Any `name=value` pair of a query string; the name is compared once percent-decoded, so
# `session_toke%6E=` is as secret as `session_token=`.
_PAIR_IN_TEXT = re.compile(r"(?P<name>[A-Za-z0-9_.%+-]+)=(?P<value>[^&\s\"']+)")


def redact_text(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if unquote_plus(match.group("name")).lower() in _SECRET_NAMES:
            return f"{match.group('name')}=[redacted]"
        return match.group(0)

    return _PAIR_IN_TEXT.sub(replace, text) if "=" in text else text


def _redact_value(key: str, value: Any) -> Any:
    if unquote_plus(key).lower() in _SECRET_KEYS:
        return "[redacted]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    return value


class RedactSecrets(logging.Filter):
    """uvicorn logs WebSocket paths with their query string, where a miner may carry its token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _redact(_: object, __: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    for key, value in event.items():
        event[key] = _redact_value(key, value)
    return event


def _console_renderer() -> structlog.dev.ConsoleRenderer:
    # Local variables of a traceback can hold an api_key or a session token: never print them.
    try:
        formatter: Any = structlog.dev.RichTracebackFormatter(show_locals=False)
    except Exception:  # rich missing: the plain traceback has no locals either
        formatter = structlog.dev.plain_traceback
    return structlog.dev.ConsoleRenderer(exception_formatter=formatter)


def configure_logging(level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: structlog.types.Processor = (
        _console_renderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if not sys.stderr.isatty()
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # uvicorn's and the libraries' stdlib loggers go through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # Our own middleware logs each request without its query string (tokens may ride there).
    logging.getLogger("uvicorn.access").disabled = True
