"""OpenTelemetry traces, optional: a server span per request and a client span per outbound call (the provider's
admin API, the front-door proxy, Client ID Metadata Document fetches), with the W3C trace context (``traceparent``,
W3C Trace Context level 1 section 3.2) sent to the provider.

Off unless ``tracing.enabled`` (``DCR_TRACING__ENABLED=true``) or, when that is not set, the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` is; the OpenTelemetry packages are the ``tracing`` extra
(``pip install 'dcr-gateway[tracing]'``) and are imported only when tracing is on: without it the gateway runs as
before, and asking for tracing without the extra stops the start with one line (:class:`TracingUnavailable`).
The exporter is OTLP over HTTP, configured by the standard ``OTEL_EXPORTER_OTLP_*`` and ``OTEL_SERVICE_NAME``
variables.

Span attributes never carry a query string (it may hold an authorization code, a state, a PKCE verifier):
:class:`_RedactingProcessor` cuts it from every URL-like attribute at span start, and client spans record URLs
without their query. Headers are captured only as OpenTelemetry's standard variables ask
(``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`` / ``_SERVER_RESPONSE`` / ``_CLIENT_REQUEST`` /
``_CLIENT_RESPONSE``; none by default), and a captured header that can carry a credential is exported as
``[REDACTED]``: ``Authorization`` (initial access tokens, registration access tokens, RFC 7591 section 3 and RFC
7592 section 2), ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``, every name that looks like one
(:data:`SENSITIVE_HEADER`), the names ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS`` lists, and the
configured provider admin headers (``DCR_HYDRA__ADMIN_HEADERS``). That redaction runs on the ended span, before
any exporter added after it sees the span (the instrumentations set header attributes after the span started, so
a start-time processor would miss them). ``/healthz``, ``/readyz`` and ``/metrics`` make no spans.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    import aiohttp
    from aiohttp.typedefs import Middleware

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Paths that make no server span (probes and scrapes would drown the traces)."""

_URL_ATTRIBUTES = ("http.target", "http.url", "url.full", "url.path", "http.route")
_DROPPED_ATTRIBUTES = ("url.query",)
_HEADER_PREFIXES = ("http.request.header.", "http.response.header.")
SENSITIVE_HEADER = re.compile(
    r"^(authorization|proxy_authorization|cookie|set_cookie)$|auth|token|secret|passw|cookie|session|credential"
    r"|api_?key|(^|_)key($|_)"
)
"""Captured header names (lower case, ``-`` as ``_``, as OpenTelemetry names the attributes) whose values are
redacted."""
REDACTED = "[REDACTED]"
SANITIZE_FIELDS = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS"


def header_attribute_name(header: str) -> str:
    """A header's name as the attribute suffix: lower case, ``-`` as ``_``."""
    return header.strip().lower().replace("-", "_")


def sensitive_header(name: str, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    """Whether a captured header (attribute suffix ``name``) may carry a credential: see :data:`SENSITIVE_HEADER`;
    ``extra``: more names (configured admin headers), plus ``OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS``
    (regular expressions, as OpenTelemetry reads them)."""
    if name in extra or SENSITIVE_HEADER.search(name):
        return True
    patterns = (header_attribute_name(field) for field in (os.environ.get(SANITIZE_FIELDS) or "").split(","))
    return any(pattern and _matches(pattern, name) for pattern in patterns)


def _matches(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name, re.IGNORECASE) is not None
    except re.error:  # not a regular expression: the name itself
        return pattern == name


class TracingSettings(BaseModel):
    """``[tracing]`` / ``DCR_TRACING__*``."""

    enabled: bool | None = None
    """``true``: export traces (OTLP over HTTP, ``OTEL_EXPORTER_OTLP_*``); ``false``: never; unset: on when
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set."""
    service_name: str = "dcr-gateway"
    """``service.name`` of the traces, unless ``OTEL_SERVICE_NAME`` names another."""

    def wanted(self, environ: dict[str, str] | None = None) -> bool:
        env = os.environ if environ is None else environ
        if self.enabled is not None:
            return self.enabled
        return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


class TracingUnavailable(ImportError):
    """Tracing is configured but the ``tracing`` extra is not installed."""


def _strip_query(value: str) -> str:
    return value.split("?", 1)[0].split("#", 1)[0]


def _redacted_headers(attributes: Any, extra: set[str]) -> dict[str, Any] | None:
    """``attributes`` with every sensitive captured header's value as ``[REDACTED]``; ``None`` when none is."""
    if not attributes:
        return None
    changed = False
    result: dict[str, Any] = {}
    for key, value in attributes.items():
        prefix = next((p for p in _HEADER_PREFIXES if key.startswith(p)), None)
        if prefix is not None and sensitive_header(key[len(prefix) :], extra):
            result[key] = (REDACTED,)
            changed = changed or value != (REDACTED,)
        else:
            result[key] = value
    return result if changed else None


def _processor_class() -> type[Any]:
    from opentelemetry.sdk.trace import SpanProcessor

    class _RedactingProcessor(SpanProcessor):
        """Cuts query strings from URL attributes and drops ``url.query`` when the span starts (its attributes
        are still writable then); redacts sensitive captured headers when it ends (the instrumentations add them
        later), before the processors added after this one (the exporting ones) see the ended span."""

        def __init__(self, extra_headers: set[str]) -> None:
            self.extra_headers = extra_headers

        def on_end(self, span: Any) -> None:
            # The ended span handed to every processor in turn is one ReadableSpan made for this call, whose
            # attribute mapping is the span's own, frozen: it is replaced by a redacted copy for all that follow.
            redacted = _redacted_headers(span.attributes, self.extra_headers)
            if redacted is not None:
                from types import MappingProxyType

                span._attributes = MappingProxyType(redacted)

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            attributes = span.attributes or {}
            for key in _URL_ATTRIBUTES:
                value = attributes.get(key)
                if isinstance(value, str) and ("?" in value or "#" in value):
                    span.set_attribute(key, _strip_query(value))
            for key in _DROPPED_ATTRIBUTES:
                if key in attributes:
                    span.set_attribute(key, "")

    return _RedactingProcessor


@dataclass
class Tracing:
    """What the app needs of OpenTelemetry: a server middleware and client trace configs, from one provider."""

    tracer_provider: Any
    """An ``opentelemetry.sdk.trace.TracerProvider``."""
    sensitive_headers: set[str] = field(default_factory=set)
    """More header names (attribute suffixes) to redact: the configured provider admin headers
    (:meth:`redact_headers`)."""
    _middleware: Any = field(default=None, init=False, repr=False)

    def redact_headers(self, names: Iterable[str]) -> None:
        """Redact these headers too when captured (e.g. ``hydra.admin_headers``: a token a sidecar checks)."""
        self.sensitive_headers.update(header_attribute_name(name) for name in names)

    @classmethod
    def from_settings(cls, settings: TracingSettings) -> Tracing:
        """The OTLP/HTTP exporter with a batch processor; raises :class:`TracingUnavailable` without the extra."""
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError as exc:
            raise TracingUnavailable(
                "tracing is enabled (DCR_TRACING__ENABLED or OTEL_EXPORTER_OTLP_ENDPOINT) but the OpenTelemetry "
                "packages are not installed: install the 'tracing' extra (pip install 'dcr-gateway[tracing]') or "
                "set DCR_TRACING__ENABLED=false"
            ) from exc
        service = os.environ.get("OTEL_SERVICE_NAME") or settings.service_name
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        tracing = cls.with_provider(provider)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return tracing

    @classmethod
    def with_provider(cls, tracer_provider: Any) -> Tracing:
        """Tracing into ``tracer_provider`` (an SDK ``TracerProvider``: the redaction is added to it first, so it
        runs before any exporting processor added later)."""
        import opentelemetry.propagate  # noqa: F401 - what adapters inject trace context with (see the Keycloak one)

        sensitive: set[str] = set()
        tracer_provider.add_span_processor(_processor_class()(sensitive))
        return cls(tracer_provider, sensitive)

    def middleware(self) -> Middleware:
        """The server span middleware (outermost), without spans for :data:`PROBES`."""
        if self._middleware is None:
            from aiohttp import web
            from opentelemetry.instrumentation.aiohttp_server import (
                AioHttpServerInstrumentor,
                create_aiohttp_middleware,
            )

            # The middleware reads module state (excluded URLs, the semantic conventions' mode, its meters) that
            # only instrument() sets; instrument() also replaces web.Application everywhere, which is undone at
            # once: this app gets the middleware explicitly, other apps in the process are left alone.
            instrumentor = AioHttpServerInstrumentor()
            if not instrumentor.is_instrumented_by_opentelemetry:
                with warnings.catch_warnings():  # its web.Application subclass, discarded at once
                    warnings.simplefilter("ignore", DeprecationWarning)
                    instrumentor.instrument(tracer_provider=self.tracer_provider)
                instrumentor.uninstrument()
            traced = create_aiohttp_middleware(tracer_provider=self.tracer_provider)

            @web.middleware
            async def tracing_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
                if request.path in PROBES:
                    response: web.StreamResponse = await handler(request)
                    return response
                traced_response: web.StreamResponse = await traced(request, handler)
                return traced_response

            self._middleware = tracing_middleware
        middleware: Middleware = self._middleware
        return middleware

    def trace_configs(self) -> list[aiohttp.TraceConfig]:
        """For an outbound ``aiohttp.ClientSession``: a client span per request, ``traceparent`` injected, URLs
        recorded without their query."""
        from opentelemetry.instrumentation.aiohttp_client import create_trace_config

        def url_filter(url: Any) -> str:
            return str(url.with_query(None).with_fragment(None))

        def names(variable: str) -> list[str]:
            return [name.strip() for name in (os.environ.get(variable) or "").split(",") if name.strip()]

        # the standard capture variables, as the instrumentor would read them; the sensitive ones sanitized at
        # capture as well as at export (the processor)
        sanitize = [*names(SANITIZE_FIELDS), "authorization", "proxy-authorization", "cookie", "set-cookie"]
        sanitize += sorted(self.sensitive_headers)
        return [
            create_trace_config(
                url_filter=url_filter,
                tracer_provider=self.tracer_provider,
                captured_request_headers=names("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST"),
                captured_response_headers=names("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE"),
                sensitive_headers=sanitize,
            )
        ]

    async def shutdown(self) -> None:
        """Flush what is buffered and stop exporting."""
        self.tracer_provider.shutdown()


def tracing_for(settings: TracingSettings) -> Tracing | None:
    """The configured tracing, or ``None`` when it is off (then nothing of OpenTelemetry is imported)."""
    if not settings.wanted():
        return None
    return Tracing.from_settings(settings)


def trace_configs(tracing: Tracing | None) -> list[aiohttp.TraceConfig] | None:
    return tracing.trace_configs() if tracing is not None else None
