"""The audit log: one structured event per client registration operation, for operators to keep and route.

Event names are Keycloak's (``org.keycloak.events.EventType``): ``CLIENT_REGISTER``, ``CLIENT_INFO``,
``CLIENT_UPDATE``, ``CLIENT_DELETE`` and their ``*_ERROR`` variants for RFC 7591 section 3 registrations and
RFC 7592 section 2 reads, updates and deletes, plus ``CLIENT_ADOPT`` and ``CLIENT_GC`` for ``dcr-gateway clients
adopt/gc``. Every event is one JSON line with ``logger="dcr_gateway.audit"`` and ``audience="audit"`` (Ory's
convention) so a log shipper can route it, written whatever ``log_level`` says.

Fields are a fixed list (:data:`FIELDS`): issuer, client id (when there is one), source address (the one the rate
limits count: trusted-proxy aware), caller kind, user agent (bounded), request id, outcome, error code, HTTP
status. Nothing else of the request is copied, so no client secret, registration access token, initial access
token or ``Authorization`` header can reach it; :func:`gateway.logging.redact` runs over each event as well.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from time import time_ns
from typing import Any, TextIO

import structlog

from gateway.logging import iso_utc, json_line_encoder, redact

log = structlog.get_logger(__name__)

AUDIT_LOGGER = "dcr_gateway.audit"
USER_AGENT_MAX = 256
"""Characters of a ``User-Agent`` kept in an event (the rest is cut, control characters dropped)."""

EVENTS = {
    "register": "CLIENT_REGISTER",
    "read": "CLIENT_INFO",
    "update": "CLIENT_UPDATE",
    "delete": "CLIENT_DELETE",
    "adopt": "CLIENT_ADOPT",
    "gc": "CLIENT_GC",
}
"""Operation -> Keycloak event name (a failure adds ``_ERROR``)."""

FIELDS = (
    "issuer",
    "client_id",
    "source",
    "caller",
    "user_agent",
    "request_id",
    "outcome",
    "error",
    "status",
    "deployment",
    "reason",
)
_FIELD_SET = frozenset(FIELDS)

_encode = json_line_encoder(ensure_ascii=False, default=str)
"""``json.dumps(event, default=str, ensure_ascii=False)``, the encoder built once (not per event)."""

ANONYMOUS = "anonymous"
INITIAL_ACCESS_TOKEN = "initial_access_token"
SOFTWARE_STATEMENT = "software_statement"
REGISTRATION_ACCESS_TOKEN = "registration_access_token"
OPERATOR = "operator"
GATEWAY = "gateway"
"""Caller kinds: RFC 7591 section 3 anonymous or initial access token, section 2.3 software statement (both, joined
by ``+``), RFC 7592 registration access token, the operator's ``dcr-gateway clients`` command, and the gateway
itself (undoing what a request it could not answer had changed: see :data:`NOT_HANDED_OVER`)."""

NOT_HANDED_OVER = "not_handed_over"
"""``reason`` of the events the gateway writes when an answer carrying credentials could not be handed over (the
request was cancelled: the client went away, or the shutdown's bound cut it; or its bytes could not be written):
``CLIENT_DELETE`` for a registration whose client was deleted again (RFC 7591 section 3.2.1 hands the credentials
over once, in that 201), ``CLIENT_UPDATE`` for an RFC 7592 update whose previous registration was restored (section
2.2). Their ``request_id``, ``source`` and ``user_agent`` are the original request's, ``caller`` is ``gateway``;
``*_ERROR`` when the provider refused the undo."""


def event_name(operation: str, *, success: bool) -> str:
    name = EVENTS[operation]
    return name if success else f"{name}_ERROR"


def bounded_user_agent(value: str | None) -> str | None:
    """``value`` without control characters, at most :data:`USER_AGENT_MAX` characters."""
    if not value:
        return None
    printable = value if value.isprintable() else "".join(char for char in value if char.isprintable())
    return printable[:USER_AGENT_MAX] or None


@dataclass
class AuditRecord:
    """What one request's handler learned for its audit event (who called, which client)."""

    operation: str
    issuer: str
    source: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    initial_access_token: bool = False
    software_statement: bool = False
    registration_access_token: bool = False
    client_id: str | None = None

    @property
    def caller(self) -> str:
        kinds = [
            kind
            for kind, presented in (
                (INITIAL_ACCESS_TOKEN, self.initial_access_token),
                (SOFTWARE_STATEMENT, self.software_statement),
                (REGISTRATION_ACCESS_TOKEN, self.registration_access_token),
            )
            if presented
        ]
        return "+".join(kinds) or ANONYMOUS


_CURRENT: ContextVar[AuditRecord | None] = ContextVar("dcr_audit_record", default=None)


def begin(record: AuditRecord) -> Any:
    """Make ``record`` the current request's (returns the token for :func:`end`)."""
    return _CURRENT.set(record)


def end(token: Any) -> None:
    _CURRENT.reset(token)


def current() -> AuditRecord | None:
    """The current request's audit record (``None`` outside a request)."""
    return _CURRENT.get()


def note(
    *,
    client_id: str | None = None,
    initial_access_token: bool | None = None,
    software_statement: bool | None = None,
) -> None:
    """Tell the current request's audit record what the handler established (no-op outside a request)."""
    record = _CURRENT.get()
    if record is None:
        return
    if client_id is not None:
        record.client_id = client_id
    if initial_access_token is not None:
        record.initial_access_token = initial_access_token
    if software_statement is not None:
        record.software_statement = software_statement


class AuditPathUnusable(ValueError):
    """``audit.path`` (``DCR_AUDIT__PATH``) cannot be opened for appending: the start stops (``serve``: exit 2)."""


class AuditLog:
    """Where audit events go: standard error (with the other log lines) by default, a file with ``path``."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        path: str | None = None,
        on_write_failure: Callable[[], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self._stream = stream
        self._path = path
        self._file: TextIO | None = None
        self._lock = threading.Lock()
        self.on_write_failure: Callable[[], None] = on_write_failure or (lambda: None)
        """Told once per event that could not be written (metrics: ``dcr_gateway_audit_write_failures_total``)."""

    def check(self) -> None:
        """Open ``path`` for appending now, at start, rather than at the first event: a path that cannot be opened
        (no such directory, not permitted, a directory) raises :class:`AuditPathUnusable` naming the setting, so
        ``serve`` and ``dcr-gateway clients`` stop before anything happens that would go unaudited."""
        if not self.enabled or self._path is None:
            return
        with self._lock:
            if self._file is not None:
                return
            try:
                self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise AuditPathUnusable(
                    f"invalid configuration: DCR_AUDIT__PATH (TOML [audit] path): cannot open {self._path} "
                    f"for appending: {reason}"
                ) from None

    def emit(self, operation: str, *, success: bool, **fields: Any) -> None:
        """One event: ``operation`` (see :data:`EVENTS`) and the :data:`FIELDS` given (others are refused).

        Never raises for the output's sake: an event that cannot be written (full disk, a file gone) is logged as
        one ``audit.write_failed`` line without its content and counted (:attr:`on_write_failure`); the operation
        it records has happened and its answer stands (a registration whose 201 turned into a 500 would leave a
        client nobody holds credentials for)."""
        if not self.enabled:
            return
        unknown = fields.keys() - _FIELD_SET
        if unknown:
            raise TypeError(f"not audit fields: {', '.join(sorted(unknown))}")
        event: dict[str, Any] = {
            "event": event_name(operation, success=success),
            "audience": "audit",
            "logger": AUDIT_LOGGER,
            "level": "info" if success else "warning",
            "timestamp": iso_utc(time_ns()),
        }
        event.update({name: value for name, value in fields.items() if value is not None and value != ""})
        if "user_agent" in event:
            event["user_agent"] = bounded_user_agent(str(event["user_agent"]))
        event.setdefault("outcome", "success" if success else "failure")
        line = _encode(redact(None, "", event)) + "\n"
        try:
            with self._lock:
                stream = self._target()
                stream.write(line)
                stream.flush()
        except (OSError, ValueError) as exc:  # a full disk, a closed or vanished file: never the operation's failure
            # Neither the event nor the exception's text (a path, maybe more): its type and errno only.
            log.error("audit.write_failed", cause=type(exc).__name__, errno=getattr(exc, "errno", None))
            self.on_write_failure()
            with self._lock:
                self._discard_file()  # what it still buffers is lost; the next event opens the path again

    def emit_record(self, record: AuditRecord, *, status: int, error: str | None) -> None:
        """The event of one answered request of the registration or client configuration endpoint."""
        success = status < 400
        self.emit(
            record.operation,
            success=success,
            issuer=record.issuer,
            client_id=record.client_id,
            source=record.source,
            caller=record.caller,
            user_agent=record.user_agent,
            request_id=record.request_id,
            outcome="success" if success else "failure",
            error=error,
            status=status,
        )

    def emit_not_handed_over(
        self, record: AuditRecord | None, operation: str, *, issuer: str, client_id: str, undone: bool
    ) -> None:
        """The event of an answer that could not be handed over and was undone (:data:`NOT_HANDED_OVER`)."""
        self.emit(
            operation,
            success=undone,
            issuer=issuer,
            client_id=client_id,
            source=record.source if record else None,
            caller=GATEWAY,
            user_agent=record.user_agent if record else None,
            request_id=record.request_id if record else None,
            error=None if undone else "server_error",
            reason=NOT_HANDED_OVER,
        )

    def _target(self) -> TextIO:
        if self._path is not None:
            if self._file is None:
                self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
            return self._file
        return self._stream or sys.stderr

    def _discard_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError, ValueError):
                file.close()

    def close(self) -> None:
        with self._lock:
            self._discard_file()
