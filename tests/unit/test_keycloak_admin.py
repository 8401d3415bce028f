"""The Keycloak adapter's admin transport when Keycloak misbehaves (issue 12, helper K): a small aiohttp server on
127.0.0.1 plays the realm's token endpoint and admin API, answering as the real one does when it redirects, is
down, or refuses the gateway's client. The real Keycloak: tests/integration/test_keycloak_admin_transport.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.base import ClientNotFound, CredentialsRefused, NewClient, ProviderUnavailable
from adapters.keycloak.adapter import REALM_SCOPES_TTL, KeycloakAdapter
from gateway.oauth.metadata import ClientMetadata
from gateway.testing.adapter_contract import new_client as contract_client

SECRET = "s3cret-never-in-an-error"
REALM = "mcp"
TOKEN = f"/realms/{REALM}/protocol/openid-connect/token"
Answer = Callable[[], Awaitable[web.StreamResponse]]
AdminHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def issued(value: str) -> Answer:
    async def answer() -> web.StreamResponse:
        return web.json_response({"access_token": value, "expires_in": 300, "token_type": "Bearer"})

    return answer


def failing(status: int, body: dict[str, str], delay: float = 0.0) -> Answer:
    async def answer() -> web.StreamResponse:
        await asyncio.sleep(delay)
        return web.json_response(body, status=status)

    return answer


@dataclass
class FakeKeycloak:
    """Serves ``token_answers`` in turn (the last one repeats); the admin API refuses a request without a bearer
    token (401), answers the realm's scope lists (empty) for the adapter's cache and hands the rest to ``admin``.
    Counts what it was sent."""

    token_answers: list[Answer]
    admin: AdminHandler
    token_requests: int = 0
    admin_requests: list[tuple[str, str]] = field(default_factory=list)
    scopes_gate: asyncio.Event | None = None
    """When set, the scope lists wait for it (a slow refresh)."""
    scopes_asked: asyncio.Event = field(default_factory=asyncio.Event)

    async def token(self, request: web.Request) -> web.StreamResponse:
        answer = self.token_answers[min(self.token_requests, len(self.token_answers) - 1)]
        self.token_requests += 1
        return await answer()

    async def admin_api(self, request: web.Request) -> web.StreamResponse:
        self.admin_requests.append((request.method, request.path_qs))
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return await refused(request)
        if request.method == "GET" and request.path.endswith("client-scopes"):
            self.scopes_asked.set()
            if self.scopes_gate is not None:
                await self.scopes_gate.wait()
            return web.json_response([])
        return await self.admin(request)


@pytest.fixture
async def serve(aiohttp_server: Any) -> AsyncIterator[Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]]]:
    """``await serve(fake)``: a started Keycloak adapter whose Keycloak is ``fake``."""
    opened: list[tuple[KeycloakAdapter, aiohttp.ClientSession]] = []

    async def start(fake: FakeKeycloak) -> KeycloakAdapter:
        app = web.Application()
        app.router.add_post(TOKEN, fake.token)
        app.router.add_route("*", "/admin/{tail:.*}", fake.admin_api)
        server = await aiohttp_server(app)
        base = str(server.make_url("")).rstrip("/")
        adapter = KeycloakAdapter(
            server_url=base, public_url=base, realms=[REALM], client_id="dcr-gateway", client_secret=SECRET
        )
        session = aiohttp.ClientSession()
        opened.append((adapter, session))
        await adapter.start(session)
        return adapter

    yield start
    for adapter, session in opened:
        await adapter.close()
        await session.close()


PUBLIC_NATIVE = ClientMetadata.model_validate(
    {
        "redirect_uris": ["http://127.0.0.1:3000/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
)


def new_client() -> NewClient:
    """A public native registration (the contract suite's builder: gateway-made id, no secret)."""
    return contract_client(PUBLIC_NATIVE, client_id=f"unit-{time.monotonic_ns()}")


async def refused(request: web.Request) -> web.StreamResponse:
    """The admin API refusing the token (RFC 6750 section 3.1)."""
    return web.json_response({"error": "HTTP 401 Unauthorized"}, status=401)


# ---------------------------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    "operation",
    [
        pytest.param(lambda adapter: adapter.read_document_client(REALM, "https://app.example/client.json"), id="find"),
        pytest.param(lambda adapter: adapter.list_clients(REALM).__anext__(), id="list"),
        pytest.param(lambda adapter: adapter.read_client(REALM, "some-client"), id="read"),
    ],
)
async def test_a_redirect_from_the_admin_api_is_provider_trouble_and_never_followed(
    serve: Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]], operation: Callable[[KeycloakAdapter], Any]
) -> None:
    """The admin API does not redirect; one that does (a misrouted ingress, a path cleaned) is not followed, so the
    bearer token never goes where it points, and it is ``ProviderUnavailable`` on every path, never a JSON error
    (a redirect answering a listing or a lookup by ``clientId`` was read as JSON: a 500)."""

    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.path.startswith(f"/admin/realms/{REALM}/elsewhere"):
            return web.json_response([])
        raise web.HTTPFound(f"/admin/realms/{REALM}/elsewhere")

    fake = FakeKeycloak([issued("t1")], redirect)
    adapter = await serve(fake)
    with pytest.raises(ProviderUnavailable):
        await operation(adapter)
    assert fake.admin_requests, "the admin API was asked"
    assert not [path for _, path in fake.admin_requests if "/elsewhere" in path], "the redirect was followed"


# ---------------------------------------------------------------------------------------------- the token


async def test_keycloak_down_when_the_token_is_refused_is_one_token_request_and_nothing_sent(
    serve: Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]],
) -> None:
    """64 concurrent creates whose token the admin API refuses (401), while the token endpoint answers 503
    slowly: one token request for all of them (single flight, its failure shared), and each create is
    ``ProviderUnavailable`` with ``request_sent`` false: a 401 changed nothing, and the second try never went out,
    so the gateway has nothing to roll back."""
    fake = FakeKeycloak([issued("t1"), failing(503, {"error": "unavailable"}, delay=0.2)], refused)
    adapter = await serve(fake)
    await adapter.realm_scopes(REALM)
    assert fake.token_requests == 1
    results = await asyncio.gather(
        *(adapter.create_client(REALM, new_client()) for _ in range(64)), return_exceptions=True
    )
    assert all(isinstance(r, ProviderUnavailable) for r in results), results[:3]
    assert [r.request_sent for r in results if isinstance(r, ProviderUnavailable)] == [False] * 64
    assert fake.token_requests == 2, fake.token_requests
    creates = [path for method, path in fake.admin_requests if method == "POST"]
    assert len(creates) == 64  # each sent once with the refused token, none again
    assert not [r for r in results if SECRET in str(r)]


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, "invalid_client"), (400, "unauthorized_client")],
)
async def test_the_token_endpoint_refusing_the_client_is_credentials_refused_never_the_registrants_fault(
    serve: Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]], status: int, error: str
) -> None:
    """RFC 6749 section 5.2: a wrong secret (401 ``invalid_client``) or a client without a service account
    (400 ``unauthorized_client``) is the gateway's configuration (503 and the setting named), not a rejection of
    the registered metadata (a 400 was ``ProviderRejected``: ``invalid_client_metadata`` to the registrant)."""
    description = "Invalid client or Invalid client credentials"
    fake = FakeKeycloak([failing(status, {"error": error, "error_description": description})], refused)
    adapter = await serve(fake)
    with pytest.raises(CredentialsRefused) as raised:
        await adapter.create_client(REALM, new_client())
    assert "DCR_KEYCLOAK__CLIENT_SECRET" in str(raised.value)
    assert SECRET not in str(raised.value)
    assert fake.token_requests == 1
    assert [method for method, _ in fake.admin_requests if method == "POST"] == []


# ------------------------------------------------------------------------------------------ realm scopes


async def created(request: web.Request) -> web.StreamResponse:
    """``POST .../clients``: 201 with the new client's ``Location``."""
    await request.read()
    return web.Response(status=201, headers={"Location": f"{request.url}/00000000-0000-0000-0000-000000000001"})


async def test_registrations_do_not_queue_behind_a_refresh_of_the_realm_scopes(
    serve: Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]],
) -> None:
    """Every :data:`REALM_SCOPES_TTL` seconds one registration refreshes the realm's scope lists; the others meanwhile
    use the previous lists (they used to wait for its three admin round trips): a registration completes while the
    refresh is held at Keycloak."""
    fake = FakeKeycloak([issued("t1")], created)
    adapter = await serve(fake)
    first = await adapter.realm_scopes(REALM)
    stamp, value = adapter._scopes[REALM]
    adapter._scopes[REALM] = (stamp - REALM_SCOPES_TTL - 1, value)  # the lists are due for a refresh
    fake.scopes_gate = asyncio.Event()
    fake.scopes_asked.clear()
    refreshing = asyncio.create_task(adapter.create_client(REALM, new_client()))
    try:
        await asyncio.wait_for(fake.scopes_asked.wait(), 5)
        await asyncio.wait_for(adapter.create_client(REALM, new_client()), 5)  # not behind the refresh
        assert not refreshing.done()
        assert [m for m, path in fake.admin_requests if m == "POST"] == ["POST"]
    finally:
        fake.scopes_gate.set()
        await refreshing
    assert await adapter.realm_scopes(REALM) == first
    assert len([m for m, _ in fake.admin_requests if m == "POST"]) == 2


# ------------------------------------------------------------------------------------------ trace context


async def test_a_session_without_instrumentation_still_sends_the_current_trace_context(
    serve: Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]],
) -> None:
    """The app's session, when the gateway traces, makes a client span per admin call and sends its context; on a
    session without OpenTelemetry's instrumentation (the CLI's, a test's) the adapter sends the current span's
    ``traceparent`` itself, when OpenTelemetry is loaded at all."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="the 'tracing' extra is not installed")
    import opentelemetry.propagate  # noqa: F401  (what the gateway's tracing loads)

    seen: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("traceparent", ""))
        return await created(request)

    fake = FakeKeycloak([issued("t1")], record)
    adapter = await serve(fake)
    tracer = sdk.TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("registration") as span:
        await adapter.create_client(REALM, new_client())
    trace_id = f"{span.get_span_context().trace_id:032x}"
    assert len(seen) == 1 and seen[0].startswith(f"00-{trace_id}-"), seen
    await adapter.create_client(REALM, new_client())  # no current span: nothing to send
    assert seen[1] == ""


async def test_a_token_near_its_expiry_is_renewed_ahead_while_admin_calls_go_on(
    serve: Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]],
) -> None:
    """Past the renewal point (``expires_in`` 300 s: after 270 s) but before the token expires, one token request
    goes out and registrations keep using the current token instead of waiting for it; once it answers, the new
    token is used. Only an expired token makes callers wait (tests/integration/test_keycloak_admin_transport.py)."""
    gate = asyncio.Event()

    async def late_t2() -> web.StreamResponse:
        await gate.wait()
        return await issued("t2")()

    sent: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        sent.append(request.headers["Authorization"])
        return await created(request)

    fake = FakeKeycloak([issued("t1"), late_t2], record)
    adapter = await serve(fake)
    await adapter.realm_scopes(REALM)
    token = adapter._admin(REALM).token
    real_clock = token.clock
    token.clock = lambda: real_clock() + 280.0
    try:
        for _ in range(3):
            await asyncio.wait_for(adapter.create_client(REALM, new_client()), 5)  # never behind the token request
        assert sent == ["Bearer t1"] * 3
        assert fake.token_requests == 2  # one request ahead, not one per call
        gate.set()
        for _ in range(100):
            if token._pending is None:
                break
            await asyncio.sleep(0.02)
        await adapter.create_client(REALM, new_client())
        assert sent[-1] == "Bearer t2"
        assert fake.token_requests == 2
    finally:
        gate.set()
        token.clock = real_clock


async def test_no_token_endpoint_is_provider_trouble_not_a_missing_client(
    serve: Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]],
) -> None:
    """A 404 from the token endpoint that does not name a missing realm (the admin URL points at something else):
    Keycloak is unusable and nothing was sent, never "client not found" (a create answered that as a 500)."""

    async def not_found() -> web.StreamResponse:
        return web.Response(status=404, text="Not Found")

    fake = FakeKeycloak([not_found], created)
    adapter = await serve(fake)
    with pytest.raises(ProviderUnavailable) as raised:
        await adapter.create_client(REALM, new_client())
    assert not isinstance(raised.value, ClientNotFound)
    assert raised.value.request_sent is False
    assert fake.admin_requests == []


async def test_the_readiness_checks_token_serves_the_admin_calls(
    serve: Callable[[FakeKeycloak], Awaitable[KeycloakAdapter]],
) -> None:
    """The start-up check (and ``/readyz``) asks the token endpoint itself, to prove the credentials; the admin
    calls then use that token instead of asking again: check plus the first registration is one token request."""

    async def admin(request: web.Request) -> web.StreamResponse:
        if request.method == "GET":  # the check's page of clients
            return web.json_response([])
        return await created(request)

    fake = FakeKeycloak([issued("t1"), issued("t2")], admin)
    adapter = await serve(fake)
    await adapter.check()
    assert fake.token_requests == 1
    await adapter.create_client(REALM, new_client())
    assert fake.token_requests == 1
