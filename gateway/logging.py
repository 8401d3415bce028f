"""structlog configuration: JSON lines when not on a TTY, a request id bound per request, and a last-line
redaction of anything that looks like a credential.

The code never logs request bodies, query strings or credentials in the first place; :func:`redact` is the
net under that rule, not the rule itself.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SENSITIVE_KEYS = frozenset(
    {
        "client_secret",
        "registration_access_token",
        "access_token",
        "refresh_token",
        "id_token",
        "password",
        "secret",
        "authorization",
        "cookie",
        "set-cookie",
        "code",
        "code_verifier",
        "initial_access_token",
    }
)
REDACTED = "[redacted]"


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any credential-named key, at any depth, with ``[redacted]``. Only containers are
    walked: a flat event (a request's access line, an audit event) costs one look-up per key."""
    for key, value in event_dict.items():  # values replaced in place: the dict's size never changes
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, dict | list | tuple):
            event_dict[key] = _scrub(value)
    return event_dict


class WithoutRequestText(logging.Filter):
    """aiohttp's server logs a malformed request with the parser's exception, whose text quotes the raw request
    line or header (an ``Authorization: Bearer`` token among them) and bypasses the structlog redaction: keep the
    event and the exception's type, drop its text and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({type(record.exc_info[1]).__name__})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


_WITHOUT_REQUEST_TEXT = WithoutRequestText()


def configure_logging(
    level: str = "INFO", fmt: str = "auto", *, cache_loggers: bool = True, stream: TextIO | None = None
) -> None:
    """Configure structlog (and the stdlib root logger it feeds) once, at start-up; ``stream`` defaults to
    standard error."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info if use_json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=cache_loggers,
    )
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    # aiohttp's own access log would print query strings; the gateway logs requests itself.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_WITHOUT_REQUEST_TEXT)  # idempotent: one shared instance
    logging.getLogger("httpx").setLevel(logging.WARNING)
