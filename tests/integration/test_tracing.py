"""OpenTelemetry traces (issue 11 item 7) through the gateway in front of the real Hydra, exported to the SDK's
``InMemorySpanExporter``: a registration makes a server span and a client span to the provider's admin API, and
the admin request Hydra received carried the W3C ``traceparent`` of that trace; a proxied authorization request
carries it too; no span attribute holds a query string (secrets in it are redacted).

Hydra's admin and public listeners are reached through a recording pass-through (a local aiohttp server that
keeps each request's headers and forwards it to the real Hydra unchanged), so the headers Hydra was sent are seen.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devstack.providers import HydraProvider, KeycloakProvider
from gateway.app import create_app
from gateway.settings import Settings
from gateway.tracing import Tracing
from tests.integration.conftest import client_record, hydra_options, keycloak_options

pytest.importorskip("opentelemetry.sdk", reason="the 'tracing' extra is not installed")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

pytestmark = pytest.mark.integration

SECRET = "q-secret-7f3a"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


@dataclass
class Recorder:
    """A pass-through to ``upstream`` that keeps (method, path, headers) of each request."""

    upstream: str
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.method, request.path, dict(request.headers)))
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                f"{self.upstream}{request.path_qs}",
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as upstream,
        ):
            body = await upstream.read()
            passed = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=upstream.status, body=body, headers=passed)


async def _recording(upstream: str) -> tuple[Recorder, TestServer]:
    recorder = Recorder(upstream)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return recorder, server


@pytest.fixture
async def traced(
    hydra_provider: HydraProvider,
) -> AsyncIterator[tuple[TestClient[Any, Any], InMemorySpanExporter, Recorder, Recorder]]:
    admin, admin_server = await _recording(hydra_provider.admin_url)
    public, public_server = await _recording(hydra_provider.public_url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    tracing = Tracing.with_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    options = hydra_options(hydra_provider)
    options["provider_url"] = str(public_server.make_url("")).rstrip("/")
    options["hydra"] = {"admin_url": str(admin_server.make_url("")).rstrip("/")}
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(Settings(**options), tracing=tracing), host="127.0.0.1")
    )
    await client.start_server()
    try:
        yield client, exporter, admin, public
    finally:
        await client.close()
        await admin_server.close()
        await public_server.close()
        provider.shutdown()


def _attribute_values(spans: Any) -> list[str]:
    return [str(value) for span in spans for value in (span.attributes or {}).values()]


async def test_a_registration_makes_a_server_span_and_a_client_span_whose_context_reaches_hydra(
    traced: tuple[TestClient[Any, Any], InMemorySpanExporter, Recorder, Recorder],
    hydra_provider: HydraProvider,
    http: aiohttp.ClientSession,
) -> None:
    client, exporter, admin, _ = traced
    exporter.clear()
    admin.seen.clear()
    response = await client.post(
        f"/register?probe={SECRET}",
        json={"redirect_uris": ["http://127.0.0.1:3000/cb"], "token_endpoint_auth_method": "none"},
    )
    assert response.status == 201, await response.text()
    client_id = (await response.json())["client_id"]
    assert await client_record(hydra_provider, http, client_id) is not None

    spans = exporter.get_finished_spans()
    servers = [s for s in spans if s.kind is SpanKind.SERVER and s.name.startswith("POST")]
    assert len(servers) == 1, [(s.name, s.kind) for s in spans]
    server = servers[0]
    clients = [s for s in spans if s.kind is SpanKind.CLIENT and s.context.trace_id == server.context.trace_id]
    creates = [s for s in clients if str((s.attributes or {}).get("http.request.method", s.name)).startswith("POST")]
    assert creates, [(s.name, s.attributes) for s in clients]
    assert all(s.parent is not None for s in clients)

    # Hydra was sent the create with the trace's context (W3C Trace Context section 3.2)
    posts = [headers for method, path, headers in admin.seen if (method, path) == ("POST", "/admin/clients")]
    assert len(posts) == 1, admin.seen
    match = TRACEPARENT.match(posts[0].get("traceparent", ""))
    assert match, posts[0]
    assert int(match.group(1), 16) == server.context.trace_id
    assert int(match.group(2), 16) in {s.context.span_id for s in creates}

    assert not [v for v in _attribute_values(spans) if SECRET in v or "probe=" in v]


async def test_a_proxied_request_carries_traceparent_and_no_query_in_its_spans(
    traced: tuple[TestClient[Any, Any], InMemorySpanExporter, Recorder, Recorder],
) -> None:
    client, exporter, _, public = traced
    exporter.clear()
    public.seen.clear()
    response = await client.get(f"/.well-known/jwks.json?state={SECRET}")  # front door: proxied to Hydra
    assert response.status == 200, await response.text()
    proxied = [headers for _, path, headers in public.seen if path == "/.well-known/jwks.json"]
    assert len(proxied) == 1, public.seen
    match = TRACEPARENT.match(proxied[0].get("traceparent", ""))
    assert match, proxied[0]
    spans = exporter.get_finished_spans()
    assert {s.kind for s in spans} >= {SpanKind.SERVER, SpanKind.CLIENT}
    assert {int(match.group(1), 16)} == {s.context.trace_id for s in spans}
    assert not [v for v in _attribute_values(spans) if SECRET in v or "state=" in v]


async def test_probes_make_no_spans(
    traced: tuple[TestClient[Any, Any], InMemorySpanExporter, Recorder, Recorder],
) -> None:
    client, exporter, _, _ = traced
    exporter.clear()
    for path in ("/healthz", "/readyz"):
        await client.get(path)
    assert exporter.get_finished_spans() == ()


async def test_keycloak_admin_calls_carry_the_trace_context(
    keycloak_provider: KeycloakProvider, http: aiohttp.ClientSession
) -> None:
    """The Keycloak admin calls go through the app's instrumented aiohttp session: a client span each, whose
    context (in the server span's trace) is the ``traceparent`` Keycloak receives."""
    admin, admin_server = await _recording(keycloak_provider.base_url)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    tracing = Tracing.with_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    options = keycloak_options(keycloak_provider, "http://127.0.0.1:1")
    options["keycloak"]["admin_url"] = str(admin_server.make_url("")).rstrip("/")
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(Settings(**options), tracing=tracing), host="127.0.0.1")
    )
    await client.start_server()
    try:
        exporter.clear()
        admin.seen.clear()
        response = await client.post(
            f"/realms/{keycloak_provider.realm}/register",
            json={"redirect_uris": ["http://127.0.0.1:3000/cb"], "token_endpoint_auth_method": "none"},
        )
        assert response.status == 201, await response.text()
        assert await client_record(keycloak_provider, http, (await response.json())["client_id"]) is not None
        server = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER)
        creates = [
            headers
            for method, path, headers in admin.seen
            if (method, path) == ("POST", f"/admin/realms/{keycloak_provider.realm}/clients")
        ]
        assert len(creates) == 1, [(m, p) for m, p, _ in admin.seen]
        match = TRACEPARENT.match(creates[0].get("traceparent", ""))
        assert match, creates[0]
        assert int(match.group(1), 16) == server.context.trace_id
        assert int(match.group(2), 16) in {
            s.context.span_id for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT
        }
    finally:
        await client.close()
        await admin_server.close()
        provider.shutdown()


INITIAL_ACCESS_TOKEN = "iat-never-in-a-span-5d1c"
ADMIN_HEADER_VALUE = "admin-header-never-in-a-span-8e2b"


async def test_captured_headers_never_carry_credentials(
    hydra_provider: HydraProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Header capture switched on for everything (``.*``, server and client side): the initial access token, the
    registration access tokens and the configured Hydra admin header are in no exported span attribute, while
    other captured headers are (the capture itself works)."""
    from gateway.access.tokens import hash_initial_access_token

    for variable in ("SERVER_REQUEST", "SERVER_RESPONSE", "CLIENT_REQUEST", "CLIENT_RESPONSE"):
        monkeypatch.setenv(f"OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_{variable}", ".*")
    monkeypatch.delenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", raising=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    tracing = Tracing.with_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    options = hydra_options(hydra_provider)
    options["hydra"] = {**options.get("hydra", {}), "admin_headers": {"X-Admin-Key": ADMIN_HEADER_VALUE}}
    options["access"] = {
        "mode": "initial_access_token",
        "initial_access_tokens": {"static_token_hashes": [hash_initial_access_token(INITIAL_ACCESS_TOKEN)]},
    }
    options["rotate_registration_access_token"] = True
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(Settings(**options), tracing=tracing), host="127.0.0.1")
    )
    await client.start_server()
    try:
        metadata = {"redirect_uris": ["http://127.0.0.1:3000/cb"], "token_endpoint_auth_method": "none"}
        response = await client.post(
            "/register",
            json=metadata,
            headers={"Authorization": f"Bearer {INITIAL_ACCESS_TOKEN}", "X-Probe": "captured"},
        )
        assert response.status == 201, await response.text()
        registered = await response.json()
        path = registered["registration_client_uri"][len(options["public_url"]) :]
        token = registered["registration_access_token"]
        read = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert read.status == 200, await read.text()
        updated = await client.put(
            path,
            json={**metadata, "client_id": registered["client_id"], "client_name": "Renamed"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert updated.status == 200, await updated.text()
        rotated = (await updated.json())["registration_access_token"]
        deleted = await client.delete(path, headers={"Authorization": f"Bearer {rotated}"})
        assert deleted.status == 204, await deleted.text()
    finally:
        await client.close()
        provider.shutdown()

    spans = exporter.get_finished_spans()
    values = _attribute_values(spans)
    for secret in (INITIAL_ACCESS_TOKEN, token, rotated, ADMIN_HEADER_VALUE):
        assert not [value for value in values if secret in value], secret
    assert any("captured" in value for value in values), "header capture is on: X-Probe is recorded"
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert any(k.startswith("http.request.header.") for s in clients for k in (s.attributes or {})), "client capture"
    authorization = [
        (s.attributes or {}).get("http.request.header.authorization")
        for s in spans
        if "http.request.header.authorization" in (s.attributes or {})
    ]
    assert authorization, "the Authorization header's presence is still recorded"
    assert all(value == ("[REDACTED]",) for value in authorization), authorization
