"""structlog configuration: JSON lines when not on a TTY, a request id bound per request, and a last-line
redaction of anything that looks like a credential.

The code never logs request bodies, query strings or credentials in the first place; :func:`redact` is the
net under that rule, not the rule itself.

A line costs what it must and no more (issue 12: at INFO the access log's one line per request cost as much as
the rest of what the gateway adds to a proxied request). Every line says what structlog's stock chain said, byte
for byte (``merge_contextvars``, ``add_log_level``, ``TimeStamper(fmt="iso", utc=True)``, :func:`redact`,
``format_exc_info``, ``JSONRenderer``, ``PrintLogger``), but: the request context is read from structlog's bound
variables instead of a walk over the whole context (:func:`merge_request_context`); the date and time of day are
formatted once per second (:func:`iso_utc`); redaction walks only containers; the JSON encoder is built once
(:func:`json_line_encoder`), not per line by ``json.dumps``; and a line leaves in one ``write()`` and one flush
(:class:`LineWriter`).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from time import time_ns
from typing import Any, TextIO

import structlog
import structlog.contextvars
from structlog.processors import _json_fallback_handler

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


_CONTAINERS = (dict, list, tuple)
_HARMLESS_KEYS: set[str] = set()
"""Event keys already found not credential-named (a key's verdict never changes): the first 1,024 seen."""
_HARMLESS_KEYS_MAX = 1024


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: REDACTED if str(k).lower() in SENSITIVE_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of any credential-named key, at any depth, with ``[redacted]``.

    Only dicts, lists and tuples are walked (and copied, a tuple as a list): any other value cannot hold a key."""
    for key, value in event_dict.items():  # values replaced in place: the dict's size does not change
        if key not in _HARMLESS_KEYS:
            if key.lower() in SENSITIVE_KEYS:
                event_dict[key] = REDACTED
                continue
            if len(_HARMLESS_KEYS) < _HARMLESS_KEYS_MAX:
                _HARMLESS_KEYS.add(key)
        if isinstance(value, _CONTAINERS):
            event_dict[key] = _scrub(value)
    return event_dict


# ------------------------------------------------------------------------------------------ the cheap line


def merge_request_context(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``structlog.contextvars.merge_contextvars``, reading the variables ``bind_contextvars`` made (structlog
    keeps them by name) instead of iterating over every variable of the current context: a key bound and not
    cleared (cleared: ``...``) is added unless the call gave it. Keys come in the order they were first bound
    anywhere (structlog's came in the context's hash order; the gateway binds one, ``request_id``). structlog is
    pinned: tests/unit/test_log_line_cost.py compares the two on every structlog upgrade."""
    # a copy: another thread binding a new key must not change the dict under this loop
    for name, var in tuple(structlog.contextvars._CONTEXT_VARS.items()):
        value = var.get(Ellipsis)
        if value is not Ellipsis:
            event_dict.setdefault(name[_PREFIX_LENGTH:], value)
    return event_dict


_PREFIX_LENGTH = structlog.contextvars.STRUCTLOG_KEY_PREFIX_LEN


def utc_second_prefix(second: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of a POSIX second, in UTC."""
    return datetime.fromtimestamp(second, UTC).isoformat()[:19]


_clock: tuple[int, str] = (-1, "")
"""The last second formatted and its text (one tuple: read and replaced whole, safe across threads)."""


def reset_clock() -> None:
    global _clock  # noqa: PLW0603 (the one-second cache)
    _clock = (-1, "")


def iso_utc(nanoseconds: int) -> str:
    """``datetime.now(UTC).isoformat()`` with ``Z`` for ``+00:00`` (what ``TimeStamper(fmt="iso", utc=True)``
    writes), from :func:`time.time_ns` truncated to the microsecond as ``datetime.now`` does; no fraction on a
    whole second, as ``isoformat`` writes none. The date and time of day are formatted once per second."""
    global _clock  # noqa: PLW0603 (the one-second cache)
    second, micro = divmod(nanoseconds // 1000, 1_000_000)
    cached_second, prefix = _clock
    if second != cached_second:
        prefix = utc_second_prefix(second)
        _clock = (second, prefix)
    return f"{prefix}.{micro:06d}Z" if micro else f"{prefix}Z"


def add_timestamp(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``timestamp``: the ISO 8601 UTC time of the line, with microseconds and ``Z`` (see :func:`iso_utc`)."""
    event_dict["timestamp"] = iso_utc(time_ns())
    return event_dict


def only_with(key: str, processor: Any) -> Callable[[Any, str, MutableMapping[str, Any]], Any]:
    """``processor`` run only on a line carrying ``key`` (``exc_info``, ``stack_info``): it does nothing else."""

    def run(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
        return processor(logger, name, event_dict) if key in event_dict else event_dict

    return run


def json_line_encoder(
    *, ensure_ascii: bool = True, default: Callable[[Any], Any] = _json_fallback_handler
) -> Callable[[Any], str]:
    """``json.dumps(value, default=default, ensure_ascii=...)`` with the encoder built once: the C encoder
    ``json.dumps`` builds for every call, the same separators, escaping and float text. Without the circular
    reference check: :func:`redact` walks every dict, list and tuple first (a cycle fails there, as it did)."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure-Python encoder, built once
        encoder = json.JSONEncoder(default=default, ensure_ascii=ensure_ascii, check_circular=False)
        return encoder.encode
    escape = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    chunks = make(None, default, escape, None, ": ", ", ", False, False, True)

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


class JSONLineRenderer:
    """``structlog.processors.JSONRenderer()``'s text, from an encoder built once (:func:`json_line_encoder`)."""

    def __init__(self) -> None:
        self._encode = json_line_encoder()

    def __call__(self, _: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
        return str(self._encode(event_dict))


class LineWriter:
    """structlog's ``PrintLogger`` in one ``write()`` per line (``print`` makes two: another writer of the stream
    could come between the text and its newline) and a flush per line (a line is out when the call returns)."""

    def __init__(self, stream: TextIO, lock: threading.Lock) -> None:
        self._write = stream.write
        self._flush = stream.flush
        self._lock = lock

    def msg(self, message: str) -> None:
        line = message + "\n"
        with self._lock:
            self._write(line)
            self._flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class LineWriterFactory:
    """One :class:`LineWriter` per logger, sharing the stream's lock."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def __call__(self, *_: Any) -> LineWriter:
        return LineWriter(self._stream, self._lock)


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
    renderer: Any = JSONLineRenderer() if use_json else structlog.dev.ConsoleRenderer()
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        numeric_level = logging.INFO
    structlog.configure(
        processors=[
            merge_request_context,
            structlog.processors.add_log_level,
            add_timestamp,
            redact,
            only_with("exc_info", structlog.processors.format_exc_info)
            if use_json
            else only_with("stack_info", structlog.processors.StackInfoRenderer()),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=LineWriterFactory(stream),
        cache_logger_on_first_use=cache_loggers,
    )
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    # aiohttp's own access log would print query strings; the gateway logs requests itself.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_WITHOUT_REQUEST_TEXT)  # idempotent: one shared instance
    logging.getLogger("httpx").setLevel(logging.WARNING)
