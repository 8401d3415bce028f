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
without their query; request and response headers are not captured (``Authorization`` carries registration
access tokens and initial access tokens). ``/healthz``, ``/readyz`` and ``/metrics`` make no spans.
"""

from __future__ import annotations

import os
import warnings
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


def _processor_class() -> type[Any]:
    from opentelemetry.sdk.trace import SpanProcessor

    class _RedactingProcessor(SpanProcessor):
        """Cuts query strings from URL attributes and drops ``url.query``, when the span starts (its attributes
        are still writable then; an ended span's are not)."""

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
    _middleware: Any = field(default=None, init=False, repr=False)

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

        tracer_provider.add_span_processor(_processor_class()())
        return cls(tracer_provider)

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

        return [create_trace_config(url_filter=url_filter, tracer_provider=self.tracer_provider)]

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
