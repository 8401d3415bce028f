"""Log lines the gateway does not write itself still carry no credentials."""

from __future__ import annotations

import logging

import structlog

from gateway.logging import WithoutRequestText, configure_logging


def test_aiohttp_server_errors_keep_the_event_but_not_the_raw_request_text() -> None:
    error = ValueError("Invalid header value: b'Authorization: Bearer secret-token-value'")
    exc_info = (ValueError, error, None)
    record = logging.LogRecord(
        "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request from %s", ("peer",), exc_info
    )
    assert WithoutRequestText().filter(record) is True
    rendered = logging.Formatter().format(record)
    assert "secret-token-value" not in rendered
    assert rendered == "Error handling request from peer (ValueError)"


def test_configure_logging_installs_the_filter_once() -> None:
    try:
        configure_logging("INFO", "json", cache_loggers=False)
        configure_logging("INFO", "json", cache_loggers=False)
    finally:
        structlog.reset_defaults()  # later tests capture DEBUG events
    filters = [f for f in logging.getLogger("aiohttp.server").filters if isinstance(f, WithoutRequestText)]
    assert len(filters) == 1
