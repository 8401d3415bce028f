"""Document clients through the app (the fetch stubbed with a fixed document; the real fetch is proved in
tests/integration/test_cimd_fetch.py): what a document that names no ``scope`` learns from the authorization
requests, bounded and never lost between gateway instances."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from gateway_factory import ISSUER, ISSUER_PATH, PUBLIC

from adapters.memory.adapter import MemoryAdapter
from gateway.app import create_app
from gateway.authorization.documents import MAX_LEARNED_SCOPES, display_name
from gateway.cimd import fetch as fetch_module
from gateway.cimd.fetch import FetchedDocument
from gateway.oauth.metadata import ClientMetadata
from gateway.settings import Settings

Client = TestClient[Any, Any]
URL = "https://app.example/client.json"
CALLBACK = "http://127.0.0.1:4000/callback"
DOCUMENT = {"client_id": URL, "client_name": "App", "redirect_uris": [CALLBACK]}
DISCOVERY = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "response_types_supported": ["code"],
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"],
}


@pytest.fixture(autouse=True)
def fixed_document(monkeypatch: pytest.MonkeyPatch) -> None:
    async def start(self: Any) -> None:
        return None

    async def fetch(self: Any, url: str, *, etag: str | None = None) -> FetchedDocument:
        body = json.dumps(DOCUMENT).encode()
        return FetchedDocument(
            url, MappingProxyType(DOCUMENT), hashlib.sha256(body).hexdigest(), time.time(), None, None
        )

    monkeypatch.setattr(fetch_module.DocumentFetcher, "start", start)
    monkeypatch.setattr(fetch_module.DocumentFetcher, "fetch", fetch)


@pytest.fixture
async def two_instances() -> AsyncIterator[tuple[Client, Client, MemoryAdapter]]:
    """Two gateway instances in front of one provider (the memory adapter, storing document clients under derived
    ids as Hydra does)."""
    upstream = web.Application()

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(DISCOVERY)

    async def authorize(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": f"{CALLBACK}?code=c"})

    upstream.router.add_get(f"{ISSUER_PATH}/.well-known/openid-configuration", discovery)
    upstream.router.add_route("*", f"{ISSUER_PATH}/authorize", authorize)
    server = TestServer(upstream, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    adapter = MemoryAdapter(public_url=base, issuer_path=ISSUER_PATH, oauth_paths=True, derived_document_ids=True)
    clients: list[Client] = []
    for _ in range(2):
        settings = Settings(public_url=PUBLIC, provider="memory", provider_url=base, limits={"enabled": False})
        client: Client = TestClient(TestServer(create_app(settings, adapter=adapter), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
    yield clients[0], clients[1], adapter
    for client in clients:
        await client.close()
    await server.close()


async def authorize(client: Client, scope: str) -> None:
    params = {"client_id": URL, "redirect_uri": CALLBACK, "scope": scope}
    async with client.get(f"{ISSUER_PATH}/authorize", params=params, allow_redirects=False) as response:
        assert response.status == 302, await response.text()


def held(adapter: MemoryAdapter) -> set[str]:
    stored = adapter.stored_client_id("default", URL)
    return set((adapter.clients["default"][stored].metadata.scope or "").split())


async def test_learned_scopes_are_never_lost_between_instances(
    two_instances: tuple[Client, Client, MemoryAdapter],
) -> None:
    a, b, adapter = two_instances
    await authorize(a, "mcp")
    await authorize(b, "openid")  # before: B's write replaced A's 'mcp', and A never wrote it back
    await authorize(a, "mcp")
    assert held(adapter) == {"mcp", "openid"}


async def test_learned_scopes_are_bounded(two_instances: tuple[Client, Client, MemoryAdapter]) -> None:
    a, _, adapter = two_instances
    for round_ in range(3):
        junk = " ".join(f"s{round_}-{i}" for i in range(50))
        await authorize(a, junk + " " + "x" * 65)  # before: every token was added, without a length limit
    assert len(held(adapter)) == MAX_LEARNED_SCOPES
    assert all(len(token) <= 64 for token in held(adapter))


CLOSED_ACCESS = {
    "mode": "initial_access_token",
    "initial_access_tokens": {"static_token_hashes": ["sha256:" + "A" * 43]},
}


@pytest.mark.parametrize(("allowed_hosts", "accepted"), [([], False), (["app.example"], True)])
async def test_closed_registration_accepts_documents_only_from_named_hosts(
    allowed_hosts: list[str], accepted: bool
) -> None:
    """Before: with registration closed (initial access tokens required), any https host's document still became a
    provider client; now only from the hosts the operator names (``cimd.allowed_hosts``)."""
    upstream = web.Application()
    seen: list[str] = []

    async def discovery(_: web.Request) -> web.Response:
        return web.json_response(DISCOVERY)

    async def authorize(request: web.Request) -> web.Response:
        seen.append(request.query.get("client_id", ""))
        return web.Response(status=302, headers={"Location": f"{CALLBACK}?code=c"})

    upstream.router.add_get(f"{ISSUER_PATH}/.well-known/openid-configuration", discovery)
    upstream.router.add_route("*", f"{ISSUER_PATH}/authorize", authorize)
    server = TestServer(upstream, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    adapter = MemoryAdapter(public_url=base, issuer_path=ISSUER_PATH, oauth_paths=True, derived_document_ids=True)
    settings = Settings(
        public_url=PUBLIC,
        provider="memory",
        provider_url=base,
        limits={"enabled": False},
        access=CLOSED_ACCESS,
        cimd={"allowed_hosts": allowed_hosts},
    )
    client: Client = TestClient(TestServer(create_app(settings, adapter=adapter), host="127.0.0.1"))
    await client.start_server()
    try:
        async with client.get(f"{ISSUER_PATH}/.well-known/openid-configuration") as response:
            assert (await response.json())["client_id_metadata_document_supported"] is accepted
        await authorize_once(client)
        stored = adapter.stored_client_id("default", URL)
        assert (stored in adapter.clients["default"]) is accepted
        assert seen == [stored if accepted else URL]  # off: passed on as any unknown client id
    finally:
        await client.close()
        await server.close()


async def authorize_once(client: Client) -> None:
    params = {"client_id": URL, "redirect_uri": CALLBACK, "scope": "mcp"}
    async with client.get(f"{ISSUER_PATH}/authorize", params=params, allow_redirects=False) as response:
        assert response.status == 302


def test_the_display_name_shows_the_document_host_and_where_the_browser_goes() -> None:
    """MCP 2026-07-28: the authorization server MUST clearly display the redirect URI hostname (the provider's
    consent page shows the client's name); a long name is shortened so the hosts always show."""
    claude_code = ClientMetadata(
        client_name="Claude Code", redirect_uris=["http://localhost/callback", "http://127.0.0.1/callback"]
    )
    shown = display_name(claude_code, "https://claude.ai/oauth/claude-code-client-metadata").client_name
    assert shown == "Claude Code (claude.ai, redirects to 127.0.0.1, localhost)"
    same_host = ClientMetadata(client_name="App", redirect_uris=["https://app.example/cb"])
    assert display_name(same_host, "https://app.example/c.json").client_name == "App (app.example)"
    private_use = ClientMetadata(client_name="Editor", redirect_uris=["cursor://anysphere.cursor-retrieval/cb"])
    assert display_name(private_use, "https://cursor.com/c.json").client_name == (
        "Editor (cursor.com, redirects to anysphere.cursor-retrieval)"
    )
    long_name = ClientMetadata(client_name="x" * 300, redirect_uris=["https://evil.example/cb"])
    shown = display_name(long_name, "https://app.example/c.json").client_name or ""
    assert shown.endswith("... (app.example, redirects to evil.example)")
    assert len(shown) < 255  # Keycloak's column
