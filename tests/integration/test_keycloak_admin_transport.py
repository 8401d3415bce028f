"""The Keycloak adapter's admin transport against the real Keycloak (issue 12, helper K): keep-alive connections,
the service account's token asked for once and reused, renewed once when Keycloak refuses it or before it
expires, and one token request for a burst of registrations that all need a new one (RFC 6749 section 4.4,
RFC 6750 section 3.1).

The adapter reaches Keycloak through :class:`AdminRecorder`, a pass-through on 127.0.0.1 that forwards every
request unchanged and keeps its method, path, answer status and the client connection it came on: what is counted
is what Keycloak was sent, whatever the adapter's transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.base import ClientNotFound, NewClient
from adapters.keycloak.adapter import KeycloakAdapter
from devstack.providers import KeycloakProvider
from gateway.oauth.metadata import ClientMetadata
from gateway.testing.adapter_contract import new_client as contract_client
from tests.integration.conftest import client_record, keycloak_admin_headers, master_admin_headers

pytestmark = pytest.mark.integration

BURST = 64
TOKEN_PATH = "/protocol/openid-connect/token"


@dataclass
class AdminRecorder:
    """Forwards to ``upstream`` over one keep-alive session; keeps (method, path, status) of each request and the
    client side of the TCP connection it arrived on."""

    upstream: str
    seen: list[tuple[str, str, int]] = field(default_factory=list)
    connections: set[tuple[str, int]] = field(default_factory=set)
    http: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert self.http is not None and request.transport is not None
        self.connections.add(request.transport.get_extra_info("peername")[:2])
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self.http.request(
            request.method,
            f"{self.upstream}{request.path_qs}",
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            passed = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
            }
        self.seen.append((request.method, request.path, upstream.status))
        return web.Response(status=upstream.status, body=body, headers=passed)

    def token_requests(self) -> int:
        return sum(1 for method, path, _ in self.seen if method == "POST" and path.endswith(TOKEN_PATH))

    def refused(self) -> int:
        """Admin requests Keycloak answered 401 (the token refused)."""
        return sum(1 for _, path, status in self.seen if status == 401 and path.startswith("/admin/"))

    def clear(self) -> None:
        self.seen.clear()
        self.connections.clear()


@pytest.fixture
async def recorder(keycloak_provider: KeycloakProvider) -> AsyncIterator[tuple[AdminRecorder, str]]:
    recorder = AdminRecorder(keycloak_provider.base_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    server = TestServer(app, host="127.0.0.1")
    async with aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()) as http:
        recorder.http = http
        await server.start_server()
        try:
            yield recorder, str(server.make_url("")).rstrip("/")
        finally:
            await server.close()


@pytest.fixture
async def adapter(
    recorder: tuple[AdminRecorder, str], keycloak_provider: KeycloakProvider
) -> AsyncIterator[KeycloakAdapter]:
    """The gateway's Keycloak adapter with the realm's service account, reaching Keycloak through the recorder."""
    _, url = recorder
    adapter = KeycloakAdapter(
        server_url=url,
        public_url=keycloak_provider.base_url,
        realms=[keycloak_provider.realm],
        client_id=keycloak_provider.admin_client_id,
        client_secret=keycloak_provider.admin_client_secret,
    )
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        try:
            yield adapter
        finally:
            await adapter.close()


PUBLIC_NATIVE = ClientMetadata.model_validate(
    {
        "redirect_uris": ["http://127.0.0.1:3000/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
)


def new_client(label: str) -> NewClient:
    """A public native registration (the contract suite's builder: gateway-made id, no secret)."""
    return contract_client(PUBLIC_NATIVE, client_id=f"transport-{label}-{time.monotonic_ns()}")


async def delete_all(adapter: KeycloakAdapter, realm: str, client_ids: list[str]) -> None:
    for client_id in client_ids:
        with contextlib.suppress(ClientNotFound):
            await adapter.delete_client(realm, client_id)


async def test_sequential_admin_calls_share_one_connection_and_one_token(
    adapter: KeycloakAdapter, recorder: tuple[AdminRecorder, str], keycloak_provider: KeycloakProvider
) -> None:
    """Ten registrations, reads and deletions one after the other: the token is asked for once, before the first
    admin call (which is never answered 401 for lack of one), and every request, the token request included,
    travels on one keep-alive connection."""
    seen, _ = recorder
    realm = keycloak_provider.realm
    created = [new_client(f"seq{i}") for i in range(10)]
    for client in created:
        await adapter.create_client(realm, client)
        assert (await adapter.read_client(realm, client.client_id)).client_id == client.client_id
    await delete_all(adapter, realm, [c.client_id for c in created])
    admin_calls = [entry for entry in seen.seen if entry[1].startswith("/admin/")]
    assert len(admin_calls) >= 3 + 10 + 10 + 20  # realm scopes, creates, reads, find + delete
    assert seen.token_requests() == 1, seen.seen
    assert seen.refused() == 0, seen.seen
    assert len(seen.connections) == 1, seen.connections


async def revoke_tokens(http: aiohttp.ClientSession, keycloak: KeycloakProvider, not_before: int) -> None:
    """The realm's ``notBefore``: Keycloak refuses every token issued before it (0: none)."""
    headers = await master_admin_headers(http, keycloak)
    async with http.put(keycloak.admin_realm_url, json={"notBefore": not_before}, headers=headers) as response:
        assert response.status == 204, await response.text()


async def test_a_burst_of_registrations_whose_token_keycloak_refuses_makes_one_token_request(
    adapter: KeycloakAdapter,
    recorder: tuple[AdminRecorder, str],
    keycloak_provider: KeycloakProvider,
    http: aiohttp.ClientSession,
) -> None:
    """The token the adapter holds is revoked (the realm's ``notBefore``): the 64 concurrent creates are each
    answered 401 once, and share one new token (RFC 6750 section 3.1: ``invalid_token``, ask again), not 64."""
    seen, _ = recorder
    realm = keycloak_provider.realm
    await adapter.realm_scopes(realm)  # the token is held now
    await asyncio.sleep(1.1)  # Keycloak's iat is in seconds: the held token is strictly older than notBefore
    clients = [new_client(f"revoked{i}") for i in range(BURST)]
    try:
        await revoke_tokens(http, keycloak_provider, int(time.time()))
        await asyncio.sleep(1.1)  # a token issued from now on is strictly newer than notBefore: accepted
        async with http.get(
            f"{keycloak_provider.admin_realm_url}/clients",
            params={"max": "1"},
            headers=await keycloak_admin_headers(http, keycloak_provider),
        ) as probe:
            assert probe.status == 200
        seen.clear()
        results = await asyncio.gather(
            *(adapter.create_client(realm, client) for client in clients), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], failures[:3]
        assert seen.refused() == BURST, seen.seen[:5]
        assert seen.token_requests() == 1, [entry for entry in seen.seen if entry[1].endswith(TOKEN_PATH)]
    finally:
        await revoke_tokens(http, keycloak_provider, 0)
        await delete_all(adapter, realm, [c.client_id for c in clients])
    assert [c for c in clients if await client_record(keycloak_provider, http, c.client_id)] == []


async def test_a_burst_of_registrations_after_the_token_expired_makes_one_token_request(
    adapter: KeycloakAdapter, recorder: tuple[AdminRecorder, str], keycloak_provider: KeycloakProvider
) -> None:
    """The held token's lifetime (``expires_in``) has run out by the adapter's clock: the 64 concurrent creates
    wait for one token request, and none of them is sent with the expired token (no 401)."""
    seen, _ = recorder
    realm = keycloak_provider.realm
    await adapter.realm_scopes(realm)
    token = adapter._admin(realm).token
    real_clock = token.clock
    token.clock = lambda: real_clock() + 24 * 3600.0
    seen.clear()
    clients = [new_client(f"expired{i}") for i in range(BURST)]
    try:
        results = await asyncio.gather(
            *(adapter.create_client(realm, client) for client in clients), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == [], failures[:3]
        assert seen.token_requests() == 1, [entry for entry in seen.seen if entry[1].endswith(TOKEN_PATH)]
        assert seen.refused() == 0
        creates = [e for e in seen.seen if e[0] == "POST" and e[1] == f"/admin/realms/{realm}/clients"]
        assert len(creates) == BURST
    finally:
        token.clock = real_clock
        await delete_all(adapter, realm, [c.client_id for c in clients])
