"""What one log line says stays byte for byte what it was (issue 12: the access log at INFO was as expensive as
the rest of what the gateway adds to a proxied request); the work per line is counted where a step was removed:
no JSON encoder built per line, one ``write()`` per line, the timestamp's date and time formatted once per second,
and no secret reaches a line."""

from __future__ import annotations

import datetime
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

import gateway.logging as gateway_logging
from gateway.logging import REDACTED, SENSITIVE_KEYS, configure_logging, redact
from gateway.observability.audit import AuditLog

TIMESTAMP = re.compile(r'"timestamp": "(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{6})?Z)"')


class CountingStream(io.StringIO):
    """A text stream counting its ``write()`` and ``flush()`` calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()

    def isatty(self) -> bool:
        return False


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    out = CountingStream()
    configure_logging("INFO", "json", stream=out)  # as `dcr-gateway serve` configures it: loggers cached
    structlog.contextvars.clear_contextvars()
    yield out
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def without_timestamp(line: str) -> tuple[str, str]:
    match = TIMESTAMP.search(line)
    assert match is not None, line
    return line.replace(match.group(1), "TS"), match.group(1)


def test_an_access_log_line_is_byte_for_byte_what_it_was(stream: CountingStream) -> None:
    structlog.contextvars.bind_contextvars(request_id="06c0b4fc6b6d1837")
    before = datetime.datetime.now(datetime.UTC)
    structlog.get_logger("gateway.app").info(
        "http.request", method="GET", path="/realms/mcp/protocol/openid-connect/certs", status=200, duration_ms=2.11
    )
    after = datetime.datetime.now(datetime.UTC)
    line, stamp = without_timestamp(stream.getvalue())
    assert line == (
        '{"method": "GET", "path": "/realms/mcp/protocol/openid-connect/certs", "status": 200, "duration_ms": 2.11, '
        '"event": "http.request", "request_id": "06c0b4fc6b6d1837", "level": "info", "timestamp": "TS"}\n'
    )
    when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - datetime.timedelta(microseconds=1) <= when <= after  # UTC, to the microsecond


def test_every_kind_of_value_renders_as_structlog_json_renderer_rendered_it(stream: CountingStream) -> None:
    """Non-ASCII text escaped, floats, None, booleans, tuples, nested dicts, objects by ``__structlog__`` or
    ``repr``, levels by their names: the same bytes as ``structlog.processors.JSONRenderer`` (``json.dumps``)."""

    class Custom:
        def __repr__(self) -> str:
            return "<Custom é>"

    class Structured:
        def __structlog__(self) -> str:
            return "structured"

    log = structlog.get_logger("x")
    fields: dict[str, Any] = {
        "text": 'é "quoted" \\ \n\x00 ☃',
        "number": 1.5e-7,
        "big": 10**30,
        "none": None,
        "flag": True,
        "pair": ("a", 1),
        "nested": {"a": [1, {"b": 2.0}], 3: "int key"},
        "custom": Custom(),
        "structured": Structured(),
    }
    log.warning("odd.values", **fields)
    log.warn("warned")
    log.error("failed", status=500)
    lines = stream.getvalue().splitlines()
    rendered, _ = without_timestamp(lines[0])
    expected = {
        **fields,
        "custom": "<Custom é>",
        "structured": "structured",
        "event": "odd.values",
        "level": "warning",
        "timestamp": "TS",
    }
    assert rendered == structlog.processors.JSONRenderer()(None, "warning", expected)
    assert json.loads(lines[1])["level"] == "warning"
    assert json.loads(lines[2])["level"] == "error"


def _fail() -> None:
    raise ValueError("boom")


def test_an_exception_line_carries_its_traceback(stream: CountingStream) -> None:
    try:
        _fail()
    except ValueError:
        structlog.get_logger("x").exception("http.unhandled_error", path="/p")
    event = json.loads(stream.getvalue())
    assert event["event"] == "http.unhandled_error"
    assert event["level"] == "error"
    assert "exc_info" not in event
    assert event["exception"].startswith("Traceback (most recent call last):")
    assert event["exception"].rstrip().endswith("ValueError: boom")


def test_a_line_is_one_write_and_one_flush(stream: CountingStream) -> None:
    """One ``write()`` per line (``print`` made two, the text and the newline: a line another writer of the same
    stream could split) and a flush per line (a line is out when the call returns)."""
    log = structlog.get_logger("gateway.app")
    for index in range(50):
        log.info("http.request", status=200, index=index)
    assert len(stream.getvalue().splitlines()) == 50
    assert stream.writes == 50
    assert stream.flushes == 50


def test_no_json_encoder_is_built_per_line(stream: CountingStream, monkeypatch: pytest.MonkeyPatch) -> None:
    """``json.dumps(..., default=...)`` built a ``JSONEncoder`` and its C encoder for every line."""
    built: list[int] = []
    real = getattr(json.encoder, "c_make_encoder", None)
    assert real is not None

    def counting(*args: Any) -> Any:
        built.append(1)
        return real(*args)

    monkeypatch.setattr(json.encoder, "c_make_encoder", counting)
    monkeypatch.setattr(json.encoder.JSONEncoder, "__init__", _counting_init(built))
    log = structlog.get_logger("gateway.app")
    for index in range(20):
        log.info("http.request", status=200, index=index)
    assert len(stream.getvalue().splitlines()) == 20
    assert built == []


def _counting_init(built: list[int]) -> Any:
    real = json.encoder.JSONEncoder.__init__

    def init(self: json.encoder.JSONEncoder, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        real(self, *args, **kwargs)

    return init


def test_the_timestamp_is_formatted_once_per_second(stream: CountingStream, monkeypatch: pytest.MonkeyPatch) -> None:
    """The date and time of day are formatted when the second changes; a line adds its microseconds. The clock is
    driven here: the same second, the next second, a whole second (``isoformat`` writes no fraction then)."""
    formatted: list[int] = []
    real = gateway_logging.utc_second_prefix

    def counting(second: int) -> str:
        formatted.append(second)
        return real(second)

    monkeypatch.setattr(gateway_logging, "utc_second_prefix", counting)
    gateway_logging.reset_clock()
    start = 1_796_193_981  # 2026-12-02T06:46:21Z
    clock = iter(
        [start * 10**9 + 741_748_123, start * 10**9 + 741_749_999, (start + 1) * 10**9 + 5_000, (start + 2) * 10**9]
    )
    monkeypatch.setattr(gateway_logging, "time_ns", lambda: next(clock))
    log = structlog.get_logger("gateway.app")
    for _ in range(4):
        log.info("tick")
    stamps = [json.loads(line)["timestamp"] for line in stream.getvalue().splitlines()]
    assert stamps == [
        "2026-12-02T06:46:21.741748Z",
        "2026-12-02T06:46:21.741749Z",
        "2026-12-02T06:46:22.000005Z",
        "2026-12-02T06:46:23Z",
    ]
    assert formatted == [start, start + 1, start + 2]
    for seconds in (start, start + 1, start + 2):
        for micro in (0, 5, 741_748):
            ours = gateway_logging.iso_utc(seconds * 10**9 + micro * 1000)
            theirs = datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(microsecond=micro)
            assert ours == theirs.isoformat().replace("+00:00", "Z")


def test_no_secret_reaches_a_line_in_either_format(tmp_path: Path) -> None:
    """Every credential-named key, in any case, at the top level, nested in dicts, in lists and tuples, is
    ``[redacted]`` in the JSON and in the console format; other values are kept."""
    secrets = {key: f"secret-{index}-value" for index, key in enumerate(sorted(SENSITIVE_KEYS))}
    for fmt in ("json", "console"):
        out = tmp_path / f"{fmt}.log"
        with out.open("w") as file:
            configure_logging("DEBUG", fmt, stream=file)
            try:
                log = structlog.get_logger("x")
                for key, secret in secrets.items():
                    log.info("top", **{key: secret, "kept": "visible-1"})
                    log.info("upper", **{key.upper(): secret})
                    log.info("nested", body={"outer": {key.title(): secret, "kept": "visible-2"}})
                    log.info("listed", items=[{key: secret}, ({key: secret},)], kept=("visible-3",))
            finally:
                structlog.reset_defaults()
        text = out.read_text()
        for secret in secrets.values():
            assert secret not in text
        assert text.count(REDACTED) == 5 * len(secrets)
        for kept in ("visible-1", "visible-2", "visible-3"):
            assert kept in text


def test_redact_replaces_only_credential_named_values() -> None:
    event: dict[str, Any] = {
        "Client_Secret": "s",
        "path": "/p",
        "status": 200,
        "headers": {"Authorization": "Bearer t", "accept": "x", 7: "seven"},
        "pairs": [("code", "c"), {"code": "c"}],
    }
    assert redact(None, "info", event) == {
        "Client_Secret": REDACTED,
        "path": "/p",
        "status": 200,
        "headers": {"Authorization": REDACTED, "accept": "x", 7: "seven"},
        "pairs": [["code", "c"], {"code": REDACTED}],
    }


def test_the_audit_line_is_byte_for_byte_what_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An audit event: the same bytes (non-ASCII kept as UTF-8, ``default=str``), no encoder built per event."""
    path = tmp_path / "audit.log"
    audit = AuditLog(path=str(path))
    built: list[int] = []
    monkeypatch.setattr(json.encoder.JSONEncoder, "__init__", _counting_init(built))
    for _ in range(3):
        audit.emit(
            "register",
            success=True,
            issuer="http://127.0.0.1:8080",
            client_id="2d01e056",
            source="127.0.0.1",
            caller="anonymous",
            user_agent="stack-check/1.0 é\x00",
            request_id="stack-check-1",
            status=201,
        )
    audit.emit("register", success=False, issuer="http://127.0.0.1:8080", error="invalid_redirect_uri", status=400)
    audit.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    first, _ = without_timestamp(lines[0])
    assert first == (
        '{"event": "CLIENT_REGISTER", "audience": "audit", "logger": "dcr_gateway.audit", "level": "info", '
        '"timestamp": "TS", "issuer": "http://127.0.0.1:8080", "client_id": "2d01e056", "source": "127.0.0.1", '
        '"caller": "anonymous", "user_agent": "stack-check/1.0 é", "request_id": "stack-check-1", '
        '"status": 201, "outcome": "success"}'
    )
    last, _ = without_timestamp(lines[3])
    assert last == (
        '{"event": "CLIENT_REGISTER_ERROR", "audience": "audit", "logger": "dcr_gateway.audit", "level": "warning", '
        '"timestamp": "TS", "issuer": "http://127.0.0.1:8080", "error": "invalid_redirect_uri", "status": 400, '
        '"outcome": "failure"}'
    )
    assert built == []


def test_the_request_context_merges_as_structlog_merged_it() -> None:
    """:func:`merge_request_context` against ``structlog.contextvars.merge_contextvars``: bound, rebound, unbound,
    cleared, given by the call (the call wins), in another context (not seen)."""
    import contextvars

    from gateway.logging import merge_request_context

    def both(**given: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        ours = merge_request_context(None, "info", dict(given))
        theirs = structlog.contextvars.merge_contextvars(None, "info", dict(given))
        return dict(ours), dict(theirs)

    structlog.contextvars.clear_contextvars()
    try:
        assert both() == ({}, {})
        structlog.contextvars.bind_contextvars(request_id="r1", client_id="c1")
        ours, theirs = both(status=200)
        assert ours == theirs == {"status": 200, "request_id": "r1", "client_id": "c1"}
        assert both(request_id="given") == ({"request_id": "given", "client_id": "c1"},) * 2
        structlog.contextvars.unbind_contextvars("client_id")
        assert both() == ({"request_id": "r1"},) * 2
        structlog.contextvars.bind_contextvars(request_id="r2")
        assert both() == ({"request_id": "r2"},) * 2

        def elsewhere() -> tuple[dict[str, Any], dict[str, Any]]:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(other="o")
            return both()

        assert contextvars.Context().run(elsewhere) == ({"other": "o"},) * 2
        assert both() == ({"request_id": "r2"},) * 2  # the other context's binding is not seen here
        structlog.contextvars.clear_contextvars()
        assert both(x=1) == ({"x": 1},) * 2
    finally:
        structlog.contextvars.clear_contextvars()
