"""The application factory: ``create_app(settings) -> web.Application``.

Routes, for every issuer the adapter serves (``{p}`` is the issuer's path, ``""`` or ``/realms/mcp``):

- discovery at every well-known location MCP clients probe (RFC 8414 section 3.1, OpenID Discovery 4),
  rewritten to advertise the gateway's registration endpoint;
- ``POST {p}{registration_path}``: RFC 7591 registration (with a CORS preflight);
- ``/healthz`` (alive) and ``/readyz`` (every issuer has a discovery document and the provider's admin API works
  with the gateway's configuration: see :class:`AdminApiHealth`); the same two handlers, with ``/metrics``, make
  the management listener's app (:data:`MANAGEMENT_APP`, :mod:`gateway.observability.management`); the public
  listener never serves ``/metrics`` (in front-door mode that path is the provider's like any other);
- front-door mode: what clients and browsers need of the provider (the allow-list) is reverse-proxied, the rest is
  404; path-routing mode: 404.

Long-lived resources (the HTTP sessions, the adapter's connections, the discovery caches) open in a
cleanup context, so they close if and only if they opened. At start the adapter's admin API is checked
(:class:`adapters.base.AdminApiCheck`): a configuration the provider refuses stops the start
(:class:`StartupRefused`); an unreachable provider is checked again in the background until it works.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import posixpath
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog
from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from adapters.base import (
    AdapterError,
    AdminApiCheck,
    DocumentClients,
    Issuer,
    ProviderAdapter,
    ProviderMisconfigured,
    ProviderVersion,
    VersionDetection,
)
from adapters.registry import get_factory
from gateway import __version__
from gateway.access.control import RegistrationAccess
from gateway.access.settings import AccessMode
from gateway.authorization.documents import DocumentClientResolver
from gateway.authorization.endpoints import AuthorizationEndpoints
from gateway.cimd.cache import DocumentCache
from gateway.cimd.fetch import DocumentFetcher
from gateway.cors import CorsPolicy
from gateway.lifecycle import LIFECYCLE, Lifecycle
from gateway.limits.guard import Limits, open_counter_store
from gateway.oauth.errors import OAuthError, ServerError
from gateway.observability.adapter import instrument_adapter
from gateway.observability.audit import AuditLog
from gateway.observability.management import management_app
from gateway.observability.metrics import GatewayMetrics
from gateway.pipeline import RegistrationPipeline, Step, error_response, not_found
from gateway.proxy import (
    FrontDoorProxy,
    PathAllowList,
    ProxyLimits,
    forwarded_headers,
    path_in_normal_form,
    request_target_error,
    unsupported_content_coding,
    unsupported_transfer_coding,
)
from gateway.registration.service import IssuerContext, RegistrationSettings
from gateway.rfc7591.handler import registration_handler
from gateway.rfc7592.handler import ClientConfigurationEndpoint
from gateway.rfc8414.cache import DiscoveryCache
from gateway.rfc8414.handler import discovery_routes, is_discovery_path
from gateway.rfc8414.scopes import registrable_scopes_source
from gateway.settings import Mode, Settings
from gateway.tracing import Tracing, trace_configs, tracing_for

log = structlog.get_logger(__name__)


class StartupRefused(Exception):
    """The provider refused the gateway's configuration at start (credentials, role, realm): ``dcr-gateway serve``
    prints the message (one line naming the setting) and exits with status 2, before anything is served."""


@dataclass
class AdminApiHealth:
    """The last check of the provider's admin API (:meth:`adapters.base.AdminApiCheck.check`), for ``/readyz``.

    ``problem`` is what ``/readyz`` shows: the kind of failure and the setting to change, never a credential nor
    an internal address (those go to the log)."""

    ok: bool = True
    problem: str | None = None
    checked_at: float = 0.0

    async def run_check(self, adapter: ProviderAdapter, *, at_start: bool = False) -> ProviderMisconfigured | None:
        """Check once; returns the refusal when the provider refuses the configuration. Never raises."""
        if not isinstance(adapter, AdminApiCheck):
            return None
        was_ok, self.checked_at = self.ok, time.monotonic()
        try:
            await adapter.check()
        except ProviderMisconfigured as exc:
            self.ok, self.problem = False, f"{exc.problem}: {exc}"
            if not at_start:  # at start, the refusal stops the gateway with the same words
                log.error("provider.misconfigured", problem=exc.problem, setting=exc.setting, cause=str(exc))
            return exc
        except AdapterError as exc:
            self.ok, self.problem = False, "provider unreachable: its admin API cannot be reached or fails; retrying"
            log.warning("provider.unreachable", cause=str(exc))
        except Exception as exc:  # the check must never take the gateway down
            self.ok, self.problem = False, f"admin API check failed ({type(exc).__name__}); retrying"
            log.exception("provider.check_failed")
        else:
            self.ok, self.problem = True, None
            if not was_ok:
                log.info("provider.ready", provider=adapter.name)
        return None

    async def watch(self, adapter: ProviderAdapter, *, healthy_interval: float, failing_interval: float) -> None:
        """Check again every ``failing_interval`` seconds while the admin API fails, ``healthy_interval`` while it
        works (so a realm deleted or credentials revoked while serving show in ``/readyz``)."""
        while True:
            await asyncio.sleep(healthy_interval if self.ok else failing_interval)
            await self.run_check(adapter)


async def log_provider_version(adapter: ProviderAdapter) -> ProviderVersion | None:
    """The provider's release and version-dependent features (:class:`adapters.base.VersionDetection`), logged once
    at start as ``provider.detected``; a provider that will not say is logged too, and the start goes on."""
    if not isinstance(adapter, VersionDetection):
        return None
    try:
        detected = await adapter.detect_version()
    except Exception as exc:  # detection informs; it never stops the gateway
        log.warning("provider.version_unknown", provider=adapter.name, cause=type(exc).__name__)
        return None
    log.info(
        "provider.detected",
        provider=detected.provider,
        version=detected.version,
        features=dict(detected.features),
        source=detected.source,
    )
    return detected


SETTINGS = web.AppKey("settings", Settings)
ADAPTER = web.AppKey("adapter", ProviderAdapter)
ADMIN_API = web.AppKey("admin_api_health", AdminApiHealth)
LIMITS = web.AppKey("limits", Limits)
"""Rate limits, the managed-client quota and the counter store (``LIMITS.store``, shared through Redis when
configured). Kept on the app for operators and tests: handlers get what they use when they are built."""
METRICS = web.AppKey("metrics", GatewayMetrics)
"""This app's Prometheus metrics (its own registry)."""
AUDIT = web.AppKey("audit", AuditLog)
MANAGEMENT_APP = web.AppKey("management_app", web.Application)
"""The management listener's app (``/metrics``, ``/healthz``, ``/readyz``), served by :func:`gateway.server.serve`
on ``management.host:management.port`` when ``management.enabled``."""


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def normalized_path(path: str) -> str:
    """The path as a lenient server might resolve it (repeated slashes folded, dot segments removed, RFC 3986
    section 5.2.4), so ``//admin`` or ``/x/../admin`` cannot slip past a blocked prefix."""
    resolved = posixpath.normpath(re.sub(r"/{2,}", "/", path))
    if path.endswith("/") and resolved != "/":
        resolved += "/"
    return resolved


_REQUEST_ID_PREFIX = secrets.token_hex(6)
_request_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique across instances (random per-process prefix) and cheap (no system call per request)."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter):x}"


def _request_id_context_var() -> contextvars.ContextVar[Any]:
    """structlog's context variable of the ``request_id`` key (``bind_contextvars`` makes it on first use and
    answers the token of each variable it set; bound here in a throw-away context)."""
    tokens = contextvars.copy_context().run(structlog.contextvars.bind_contextvars, request_id=None)
    return tokens["request_id"].var


def build_middlewares(
    *, access_log: bool = True, metrics: GatewayMetrics | None = None, route_classes: Mapping[object, str] | None = None
) -> list[Middleware]:
    """One middleware for the cross-cutting parts (a single layer keeps the per-request cost low). The
    registration endpoints answer their own errors, with CORS (:mod:`gateway.pipeline`); this catches the rest.

    ``access_log``: one ``http.request`` line per request; off when the log level filters INFO out anyway, so
    its arguments are not even built. ``metrics``: every request counted and timed by its route's class
    (``route_classes``, filled as routes are added; never the path).
    """
    classes = route_classes if route_classes is not None else {}

    def log_request(request: web.Request, status: int, started: float) -> None:
        if metrics is not None:
            route = request.match_info.route.resource if request.match_info.route is not None else None
            metrics.http_request(
                route=classes.get(route, "other"), status=status, seconds=time.perf_counter() - started
            )
        if access_log:
            # Path only: query strings carry authorization codes and state.
            log.info(
                "http.request",
                method=request.method,
                path=request.path,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )

    request_id_var = _request_id_context_var()

    @web.middleware
    async def gateway_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """A request id (an incoming well-formed ``X-Request-Id``, else a new one) bound into every log line;
        RFC-shaped JSON for every error the gateway raises, never a stack trace; one access-log line.

        The request id is set in structlog's context variable directly (what ``bind_contextvars`` does): aiohttp
        runs every request in a task of its own with a copy of the connection's context, so nothing bound while
        serving one request reaches the next and there is nothing to clear. A GET/HEAD-like request (origin-form
        target, no body, no ``Transfer-Encoding``, not ``CONNECT``; discovery's) skips the three refusal checks,
        each of which answers ``None`` for it."""
        incoming = request.headers.get("X-Request-Id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else new_request_id()
        request_id_var.set(request_id)
        started = time.perf_counter()
        response: web.StreamResponse
        try:
            # odd request targets (OPTIONS *, CONNECT, ...) and encoded bodies, before any route sees them
            if (
                request.raw_path[:1] == "/"
                and not request.body_exists
                and request.method != hdrs.METH_CONNECT
                and hdrs.TRANSFER_ENCODING not in request.headers
            ):
                refusal = None  # what each of the three checks answers for such a request
            else:
                refusal = (
                    request_target_error(request)
                    or unsupported_transfer_coding(request)
                    or unsupported_content_coding(request)
                )
            response = refusal if refusal is not None else await handler(request)
        except OAuthError as exc:
            response = error_response(exc)
        except web.HTTPException as exc:
            if exc.status not in (404, 405):
                log_request(request, exc.status, started)
                raise
            body = {  # the reason only: the method and path are the client's bytes, never reflected
                "error": "not_found" if exc.status == 404 else "invalid_request",
                "error_description": exc.reason,
            }
            headers = {name: value for name, value in exc.headers.items() if name.lower() != "content-type"}
            response = web.json_response(body, status=exc.status, headers=headers)
        except Exception:
            log.exception("http.unhandled_error", path=request.path)
            response = error_response(ServerError("an internal error occurred"))
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        log_request(request, response.status, started)
        return response

    return [gateway_middleware]


def check_issuer_overrides(settings: Settings, issuers: list[Issuer]) -> None:
    """Refuse per-issuer overrides that name no served issuer: a typo would leave that issuer open without a word."""
    served = [(issuer.key, issuer.path) for issuer in issuers]
    for section, unknown in (
        ("access", settings.access.unknown_overrides(served)),
        ("resources", settings.resources.unknown_overrides(served)),
    ):
        if unknown:
            raise ValueError(f"{section}.issuers names no served issuer: {', '.join(unknown)}")


def create_app(
    settings: Settings, *, adapter: ProviderAdapter | None = None, tracing: Tracing | None = None
) -> web.Application:
    """Build the gateway for ``settings``; ``adapter`` overrides the configured provider (tests), ``tracing`` the
    tracing ``settings.tracing`` configures (tests: an in-memory exporter; :mod:`gateway.tracing`).

    Every long-lived object (limits, discovery caches, issuer contexts, access control, the front-door proxy) is
    built here and handed to the handlers that use it; :func:`_resources` (the cleanup context) opens the HTTP
    sessions, starts them, and closes them."""
    if adapter is None:
        adapter = get_factory(settings.provider)(settings)
    metrics, audit_log = observability(settings, adapter)
    cors = CorsPolicy(allowed_origins=tuple(settings.cors_allowed_origins))
    issuers = adapter.issuers()
    check_issuer_overrides(settings, issuers)
    registration_paths = {issuer.key: f"{issuer.path}{settings.registration_path}" for issuer in issuers}

    access_log = logging.getLevelName(settings.log_level.upper()) in (logging.DEBUG, logging.INFO)
    own_tracing = tracing is None
    tracing = configured_tracing(settings, tracing)
    route_classes = RouteClasses()
    middlewares = build_middlewares(access_log=access_log, metrics=metrics, route_classes=route_classes)
    app = web.Application(
        middlewares=[tracing.middleware(), *middlewares] if tracing is not None else middlewares,
        # request bodies reach handlers as sent: never inflated by the server (an encoded body gets 415)
        handler_args={"auto_decompress": False},
    )
    admin_api = AdminApiHealth()
    # the store connects lazily: building never fails on a down Redis (see open_counter_store)
    limits = Limits.build(
        settings.limits,
        store=open_counter_store(settings.limits),
        adapter=adapter,
        trust_forwarded_for=settings.trust_forwarded_for,
    )
    app[SETTINGS] = settings
    app[ADAPTER] = adapter
    app[ADMIN_API] = admin_api
    app[LIMITS] = limits
    lifecycle = app[LIFECYCLE] = Lifecycle.of(app)  # draining on SIGTERM (gateway.lifecycle, gateway.server)
    app[METRICS], app[AUDIT] = metrics, audit_log

    contexts = issuer_contexts(settings, adapter, issuers)
    caches = {context.path: context.discovery for context in contexts.values()}

    reg_settings = RegistrationSettings(
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout_seconds,
        stored_lengths=adapter.capabilities.stored_lengths,
        message_template_fields=adapter.capabilities.message_template_fields,
        policy=settings.policy,
    )
    fetcher, documents = document_clients(settings, adapter, issuers, reg_settings, limits, tracing=tracing)

    readyz = readiness(caches, admin_api, lifecycle=lifecycle)  # one readiness logic, on both listeners
    route_classes.add([app.router.add_get("/healthz", healthz), app.router.add_get("/readyz", readyz)], "health")
    app[MANAGEMENT_APP] = management_app(metrics=metrics, healthz=healthz, readyz=readyz, gateway=app)
    route_classes.add(
        app.router.add_routes(discovery_routes(caches, cors=cors, issuer_paths=[i.path for i in issuers])),
        "discovery",
    )

    for issuer in issuers:
        path = registration_paths[issuer.key]
        context = contexts[issuer.key]
        pipeline = RegistrationPipeline(
            issuer_key=issuer.key, cors=cors, limits=limits, issuer=context.issuer, metrics=metrics, audit=audit_log
        )
        access = RegistrationAccess(
            settings.access.for_issuer(key=issuer.key, path=issuer.path),
            issuer=context.issuer,
            issuer_key=issuer.key,
            store=limits.store,
        )
        register = registration_handler(
            issuer=context,
            adapter=adapter,
            settings=reg_settings,
            access=access,
            limits=limits,
            lifecycle=lifecycle,
            audit_log=audit_log,
            metrics=metrics,
        )
        route_classes.add(
            app.router.add_routes(pipeline.routes(path, {hdrs.METH_POST: Step(register, rate_limit="register")})),
            "registration",
        )
        configuration = ClientConfigurationEndpoint(  # RFC 7592: {issuer path}{registration_path}/{client_id}
            issuer=context,
            adapter=adapter,
            settings=reg_settings,
            limits=limits,
            rotate_registration_access_token=settings.rotate_registration_access_token,
            lifecycle=lifecycle,
            audit_log=audit_log,
            metrics=metrics,
        )
        route_classes.add(
            app.router.add_routes(configuration.routes(pipeline, path + "/{client_id}")), "client_configuration"
        )

    async def nothing_here(request: web.Request) -> web.Response:
        return not_found()

    # The provider's authorization, PAR, token and revocation endpoints go through the gateway's checks in both
    # modes (in path-routing mode the ingress routes those paths here, see deploy/nginx).
    proxy = front_door_proxy(settings, limits)
    observe(metrics, contexts, limits, proxy=proxy, fetcher=fetcher)
    for issuer in issuers:
        endpoints = AuthorizationEndpoints(
            issuer=contexts[issuer.key],
            paths=issuer,
            adapter=adapter,
            documents=documents,
            resources=settings.resources.for_issuer(key=issuer.key, path=issuer.path),
            proxy=proxy,
            limits=limits,
        )
        route_classes.add(app.router.add_routes(endpoints.routes()), endpoint_class)
    if settings.mode is Mode.FRONT_DOOR:
        front_door = front_door_handler(settings, issuers, list(registration_paths.values()), proxy)
        route_classes.add([app.router.add_route("*", "/{tail:.*}", front_door)], "proxied")
    else:
        route_classes.add([app.router.add_route("*", "/{tail:.*}", nothing_here)], "not_found")

    app.cleanup_ctx.append(
        functools.partial(
            _resources,
            settings=settings,
            adapter=adapter,
            admin_api=admin_api,
            limits=limits,
            caches=list(caches.values()),
            proxy=proxy,
            fetcher=fetcher,
            tracing=tracing,
            own_tracing=own_tracing,
            audit_log=audit_log,
        )
    )
    return app


_ENDPOINT_CLASSES = {
    "authorization": "authorization",
    "pushed_authorization": "par",
    "token": "token",
    "revocation": "revocation",
}


def endpoint_class(route: web.AbstractRoute) -> str:
    """The route class of one of :class:`AuthorizationEndpoints`' routes, from the handler that serves it."""
    return _ENDPOINT_CLASSES.get(getattr(route.handler, "__name__", ""), "other")


def configured_tracing(settings: Settings, tracing: Tracing | None) -> Tracing | None:
    """``tracing``, or the one ``settings.tracing`` configures (``None`` when off: nothing of OpenTelemetry is
    imported); the configured admin headers are redacted whenever captured (:mod:`gateway.tracing`)."""
    if tracing is None:
        tracing = tracing_for(settings.tracing)
    if tracing is not None:
        tracing.redact_headers(settings.hydra.admin_headers)
    return tracing


def observability(settings: Settings, adapter: ProviderAdapter) -> tuple[GatewayMetrics, AuditLog]:
    """This app's metrics (its own registry) and audit log; ``adapter`` instrumented in place, so every admin
    call is counted and timed in one place whatever the adapter."""
    metrics = GatewayMetrics(version=__version__)
    instrument_adapter(adapter, metrics)
    audit_log = AuditLog(
        enabled=settings.audit.enabled, path=settings.audit.path, on_write_failure=metrics.audit_write_failed
    )
    audit_log.check()  # an audit path that cannot be opened stops the start (AuditPathUnusable: serve exits 2)
    return metrics, audit_log


async def healthz(request: web.Request) -> web.Response:
    """``/healthz``: the process answers."""
    return web.json_response({"status": "ok"})


class RouteClasses(dict[object, str]):
    """Resource -> route class (:data:`gateway.observability.metrics.ROUTE_CLASSES`): what the request metrics
    label a request with, never its path."""

    def add(self, routes: list[web.AbstractRoute], route_class: str | Callable[[web.AbstractRoute], str]) -> None:
        for route in routes:
            self[route.resource] = route_class if isinstance(route_class, str) else route_class(route)


def _fetched_at(cache: DiscoveryCache) -> float | None:
    document = cache.current()
    return None if document is None else document.fetched_at


def observe(
    metrics: GatewayMetrics,
    contexts: Mapping[str, IssuerContext],
    limits: Limits,
    *,
    proxy: FrontDoorProxy,
    fetcher: DocumentFetcher | None,
) -> None:
    """Connect what the metrics read or are told: each issuer's discovery document age and refresh failures
    (RFC 8414), the managed-client quota per issuer, the limits' and the proxy's refusals, the CIMD fetches.
    Issuer labels are the configured issuers' URLs."""
    metrics.initialize(context.issuer for context in contexts.values())
    for key, context in contexts.items():
        cache = context.discovery
        metrics.watch_discovery(context.issuer, functools.partial(_fetched_at, cache))
        cache.on_refresh_failure = functools.partial(metrics.discovery_refresh_failed, context.issuer)
        metrics.watch_quota(
            context.issuer,
            count=functools.partial(limits.quota.known, key),
            maximum=limits.quota.max_clients,
        )
    limits.rate.on_rejected = metrics.limit_rejected
    limits.quota.on_rejected = metrics.limit_rejected
    proxy.on_rejected = metrics.limit_rejected
    if fetcher is not None:
        fetcher.on_fetch = metrics.cimd_fetch


def document_clients(
    settings: Settings,
    adapter: ProviderAdapter,
    issuers: list[Issuer],
    registration: RegistrationSettings,
    limits: Limits,
    *,
    tracing: Tracing | None = None,
) -> tuple[DocumentFetcher | None, DocumentClientResolver | None]:
    """The document fetcher and the resolver of Client ID Metadata Documents, when they are accepted at all."""
    if not documents_accepted(settings, adapter):
        return None, None
    closed = [issuer for issuer in issuers if not documents_enabled(settings, adapter, issuer)]
    for issuer in closed:
        log.info(
            "cimd.off", issuer=f"{settings.public_url}{issuer.path}", reason=_documents_off_reason(settings, issuer)
        )
    fetcher = DocumentFetcher(settings.cimd, trace_configs=trace_configs(tracing))
    return fetcher, DocumentClientResolver(
        adapter=adapter,
        off_issuers=frozenset(issuer.key for issuer in closed),
        cache=DocumentCache(fetcher, settings.cimd),
        settings=settings.cimd,
        registration=registration,
        limits=limits,
        deployment=settings.deployment,
    )


def documents_accepted(settings: Settings, adapter: ProviderAdapter) -> bool:
    """Client ID Metadata Documents are on (``cimd.enabled``) and the adapter can hold document clients."""
    return settings.cimd.enabled and isinstance(adapter, DocumentClients)


def readiness(
    caches: Mapping[str, DiscoveryCache], admin_api: AdminApiHealth, *, lifecycle: Lifecycle | None = None
) -> Handler:
    """``/readyz`` (on every listener: the same handler)."""

    async def readyz(request: web.Request) -> web.Response:
        """Ready: not shutting down (:mod:`gateway.lifecycle`), every issuer has a discovery document and the
        admin API worked at its last check."""
        if lifecycle is not None and lifecycle.draining:
            return web.json_response({"status": "shutting_down"}, status=503, headers={hdrs.CACHE_CONTROL: "no-store"})
        missing = [path or "/" for path, cache in caches.items() if cache.current() is None]
        if missing or not caches or not admin_api.ok:
            body: dict[str, object] = {"status": "starting", "issuers_without_metadata": missing}
            if not admin_api.ok:
                body["status"] = "unavailable"
                body["admin_api"] = admin_api.problem
            return web.json_response(body, status=503, headers={hdrs.CACHE_CONTROL: "no-store"})
        return web.json_response({"status": "ready"}, headers={hdrs.CACHE_CONTROL: "no-store"})

    return readyz


def issuer_contexts(settings: Settings, adapter: ProviderAdapter, issuers: list[Issuer]) -> dict[str, IssuerContext]:
    """Each served issuer's context by key, with its discovery cache (RFC 8414), not started yet."""
    upstream_headers = forwarded_headers(settings.public_url)
    caches: dict[str, DiscoveryCache] = {}
    contexts: dict[str, IssuerContext] = {}
    for issuer in issuers:
        registration_endpoint = f"{settings.public_url}{issuer.path}{settings.registration_path}"
        caches[issuer.path] = DiscoveryCache(
            None,  # the session opens when the app starts
            issuer.metadata_url,
            registration_endpoint=registration_endpoint,
            expected_issuer=f"{settings.public_url}{issuer.path}",
            headers=upstream_headers,
            refresh_interval=settings.discovery_refresh_seconds,
            retry_interval=settings.discovery_retry_seconds,
            timeout=settings.provider_timeout,
            # scopes_supported: only what a registration here can obtain (adapter limit, policy allow-list)
            registrable_scopes=registrable_scopes_source(adapter, issuer.key, settings.policy.scopes),
            extra=discovery_extra(settings, adapter, issuer),
            public_clients=documents_enabled(settings, adapter, issuer),
        )
        contexts[issuer.key] = IssuerContext(
            key=issuer.key,
            path=issuer.path,
            issuer=f"{settings.public_url}{issuer.path}",
            registration_endpoint=registration_endpoint,
            discovery=caches[issuer.path],
        )

    return contexts


def documents_enabled(settings: Settings, adapter: ProviderAdapter, issuer: Issuer) -> bool:
    """CIMD is served for ``issuer``: on, not disabled for it, its authorization endpoint is checked here, and
    either anyone may register there (``access`` mode ``open``) or the operator named the document hosts it trusts
    (``cimd.allowed_hosts``): a document client is a client nobody registered, so an issuer whose registration
    is closed does not get one from any https host by default."""
    if not documents_accepted(settings, adapter) or issuer.authorization_path is None:
        return False
    if issuer.key in settings.cimd.disabled_issuers:
        return False
    open_registration = settings.access.for_issuer(key=issuer.key, path=issuer.path).mode is AccessMode.OPEN
    return open_registration or bool(settings.cimd.allowed_hosts)


def _documents_off_reason(settings: Settings, issuer: Issuer) -> str:
    if issuer.authorization_path is None:
        return "the adapter names no authorization endpoint"
    if issuer.key in settings.cimd.disabled_issuers:
        return "cimd.disabled_issuers"
    return "registration is not open here (access mode) and cimd.allowed_hosts names no trusted document host"


def discovery_extra(settings: Settings, adapter: ProviderAdapter, issuer: Issuer) -> dict[str, object]:
    """What the gateway itself implements, advertised only where it is enforced: RFC 9207 section 3
    ``authorization_response_iss_parameter_supported`` (the gateway adds ``iss`` to the authorization endpoint's
    responses) and the CIMD draft's ``client_id_metadata_document_supported`` (section 5)."""
    if issuer.authorization_path is None:
        return {}
    return {
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": documents_enabled(settings, adapter, issuer),
    }


def front_door_proxy(settings: Settings, limits: Limits) -> FrontDoorProxy:
    """The reverse proxy to the provider (its session is attached when the app starts)."""
    front = settings.front_door
    return FrontDoorProxy(
        None,
        settings.provider_url,
        settings.public_url,
        append_forwarded_for=settings.trust_forwarded_for,
        limits=ProxyLimits(
            max_body_bytes=front.max_body_bytes,
            body_timeout=front.body_timeout_seconds,
            send_timeout=front.send_timeout_seconds,
            pool_size=front.pool_size,
            max_concurrent_per_source=front.max_concurrent_per_source,
        ),
        source_of=limits.rate.source_of,  # the limits' source address: X-Forwarded-For hops, IPv6 prefix
    )


def front_door_handler(
    settings: Settings, issuers: list[Issuer], registration_paths: list[str], forward: FrontDoorProxy
) -> Handler:
    """The catch-all route of front-door mode."""
    allowed = front_door_allow_list(settings, issuers)
    registration_prefixes = (
        tuple(prefix for issuer in issuers for prefix in issuer.native_registration_paths)
        if settings.block_native_registration
        else ()
    )
    blocked_prefixes = tuple(settings.blocked_paths)

    async def front_door(request: web.Request) -> web.StreamResponse:
        """Only what OAuth clients and browsers need of the served issuers is forwarded (the allow-list),
        in paths that the gateway and the provider cannot resolve differently; the block list and the
        provider's own registration endpoints are closed on top of it."""
        if is_discovery_path(request.path):
            return not_found()  # an issuer we do not serve: 404, never the provider's 5xx
        path = request.path or "/"
        if not path_in_normal_form(path):  # no empty or dot segment: the path is its own normalized_path()
            return not_found()
        if blocked_prefixes and path.startswith(blocked_prefixes):
            return not_found()
        if registration_prefixes and path.startswith(registration_prefixes):
            return not_found(
                "the provider's own registration endpoint is closed; register at "
                + ", ".join(f"{settings.public_url}{p}" for p in registration_paths)
            )
        if not allowed.allows(path):
            log.debug("proxy.not_allowed", method=request.method, path=path)
            return not_found()
        return await forward(request)

    return front_door


def front_door_allow_list(settings: Settings, issuers: list[Issuer]) -> PathAllowList:
    """What the front door forwards: each issuer's public paths (everything under its path when the adapter
    names none), its account pages with ``front_door.account_pages``, the provider's own registration
    endpoints when ``block_native_registration`` is off, and the operator's ``front_door.allowed_paths``."""
    prefixes: list[str] = list(settings.front_door.allowed_paths)
    for issuer in issuers:
        prefixes.extend(issuer.public_paths or (issuer.path or "/",))
        if settings.front_door.account_pages:
            prefixes.extend(issuer.account_paths)
        if not settings.block_native_registration:
            prefixes.extend(issuer.native_registration_paths)
    return PathAllowList(prefixes)


async def _resources(
    app: web.Application,
    *,
    settings: Settings,
    adapter: ProviderAdapter,
    admin_api: AdminApiHealth,
    limits: Limits,
    caches: list[DiscoveryCache],
    proxy: FrontDoorProxy | None,
    fetcher: DocumentFetcher | None = None,
    tracing: Tracing | None = None,
    own_tracing: bool = False,
    audit_log: AuditLog | None = None,
) -> AsyncIterator[None]:
    """Open the HTTP sessions and start what ``create_app`` built; close all of it (what opened) on the way out."""
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    session = aiohttp.ClientSession(
        timeout=timeout, cookie_jar=aiohttp.DummyCookieJar(), trace_configs=trace_configs(tracing)
    )
    proxy_session: aiohttp.ClientSession | None = None
    started: list[DiscoveryCache] = []
    watcher: asyncio.Task[None] | None = None
    fetcher_started = False
    try:
        # First the provider's admin API: a configuration it refuses stops the start before anything else happens.
        await adapter.start(session)
        refused = await admin_api.run_check(adapter, at_start=True)
        if refused is not None:
            raise StartupRefused(f"the provider refuses the configuration: {refused.problem}: {refused}")
        await log_provider_version(adapter)
        log.info("limits.configured", **limits.describe())
        if proxy is not None:
            front = settings.front_door
            proxy_session = FrontDoorProxy.new_session(
                timeout=front.read_timeout_seconds or settings.provider_timeout,
                connect_timeout=front.connect_timeout_seconds or settings.provider_timeout,
                limit=front.pool_size,
                trace_configs=trace_configs(tracing),
            )
            proxy.attach(proxy_session)
        if fetcher is not None:
            await fetcher.start()
            fetcher_started = True
        for cache in caches:
            await cache.start(session)
            started.append(cache)
        watcher = asyncio.create_task(
            admin_api.watch(
                adapter,
                healthy_interval=settings.discovery_refresh_seconds,
                failing_interval=settings.discovery_retry_seconds,
            )
        )
        log.info(
            "gateway.started",
            provider=adapter.name,
            mode=settings.mode.value,
            issuers=[f"{settings.public_url}{i.path}" for i in adapter.issuers()],
        )
        yield
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await limits.close()
        for cache in started:
            await cache.close()
        await adapter.close()
        if proxy_session is not None:
            await proxy_session.close()
        if fetcher is not None and fetcher_started:
            await fetcher.close()
        await session.close()
        if tracing is not None and own_tracing:
            await tracing.shutdown()
        if audit_log is not None:
            audit_log.close()
