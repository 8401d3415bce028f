"""Discovery advertises only the scopes a registration can obtain (RFC 8414 section 2 ``scopes_supported``).

The limits come from the same facts registration uses: the adapter's optional ``registrable_scopes`` and the
policy's scope allow-list. The last tests drive the real app (memory adapter, a fake provider) and register
with exactly what discovery advertises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpServer
from rfc8414_fakes import FakeProvider, keycloak_document

from adapters.base import ProviderAdapter, RegistrableScopes
from adapters.memory.adapter import MemoryAdapter
from gateway.app import create_app
from gateway.oauth.metadata import ClientMetadata
from gateway.policy.rules import RegistrationPolicy, scopes_allowed
from gateway.policy.settings import PolicySettings, ScopeMode, ScopeSettings
from gateway.rfc8414.rewrite import rewrite
from gateway.rfc8414.scopes import combine, policy_scope_limit, registrable_scopes_source
from gateway.settings import Settings

PUBLIC = "http://gateway.test"
ISSUER_PATH = "/realms/mcp"
REALM = frozenset({"openid", "basic", "profile", "email", "offline_access", "mcp"})
"""What the fake provider's registration can attach (a Keycloak realm's defaults and default-optional scopes)."""


class ScopedMemoryAdapter(MemoryAdapter):
    """The memory adapter with the optional capability, as the Keycloak adapter has it."""

    def __init__(self, scopes: frozenset[str] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scopes = scopes
        self.asked: list[str] = []

    async def registrable_scopes(self, issuer: str) -> frozenset[str] | None:  # type: ignore[override]
        self.asked.append(issuer)
        return self.scopes


class PlainAdapter:
    """A third-party adapter from before the capability existed: only what it had to have."""

    def __getattr__(self, name: str) -> Any:
        if name == "registrable_scopes":
            raise AttributeError(name)
        raise NotImplementedError(name)


# ----------------------------------------------------------------------------------- the policy limit


@pytest.mark.parametrize(
    ("settings", "limit"),
    [
        (ScopeSettings(), None),  # no allow-list
        (ScopeSettings(include_advertised=True), None),  # allowed = advertised: limits nothing advertised
        (ScopeSettings(allowed=("mcp", "openid")), frozenset({"mcp", "openid"})),
        (ScopeSettings(allowed=("mcp",), mode=ScopeMode.STRICT), frozenset({"mcp"})),
        (ScopeSettings(allowed=("mcp",), include_advertised=True), None),  # mcp plus everything advertised
        (ScopeSettings(allowed=()), frozenset()),  # nothing may be registered
    ],
)
def test_policy_limit_follows_the_allow_list_semantics(settings: ScopeSettings, limit: frozenset[str] | None) -> None:
    assert policy_scope_limit(settings) == limit


def test_limits_intersect_and_absent_limits_are_ignored() -> None:
    assert combine() is None
    assert combine(None, None) is None
    assert combine({"a", "b"}, None) == frozenset({"a", "b"})
    assert combine(None, {"b", "c"}, {"a", "b", "c"}) == frozenset({"b", "c"})
    assert combine({"a"}, {"b"}) == frozenset()


@pytest.mark.parametrize(
    "settings",
    [
        ScopeSettings(),
        ScopeSettings(include_advertised=True),
        ScopeSettings(allowed=("openid", "mcp", "email", "unknown")),
        ScopeSettings(allowed=("openid", "mcp"), mode=ScopeMode.STRICT),
        ScopeSettings(allowed=("mcp",), include_advertised=True, mode=ScopeMode.STRICT),
    ],
)
@pytest.mark.parametrize("provider_limit", [None, REALM])
async def test_every_advertised_scope_passes_the_registration_policy(
    settings: ScopeSettings, provider_limit: frozenset[str] | None
) -> None:
    """Discovery and registration agree: registering ``scope`` = the served ``scopes_supported`` loses nothing to
    the policy, which derives ``include_advertised`` from that same served document. (The strict allow-lists here
    list ``openid``: discovery keeps ``openid`` whatever the allow-list says, OpenID Discovery 1.0 section 3.)"""
    source = registrable_scopes_source(ScopedMemoryAdapter(provider_limit, public_url="http://p"), "default", settings)
    assert source is not None
    limit = await source()
    upstream = keycloak_document()
    served = rewrite(upstream, registration_endpoint="https://g/register", registrable_scopes=limit)
    advertised = " ".join(served["scopes_supported"])
    policy = RegistrationPolicy.from_settings(PolicySettings(scopes=settings), served)
    assert scopes_allowed(ClientMetadata(scope=advertised), policy) is None  # nothing dropped, nothing refused
    assert "service_account" not in served["scopes_supported"] or (provider_limit is None and limit is None)


async def test_source_asks_the_adapter_each_time_and_applies_the_allow_list() -> None:
    adapter = ScopedMemoryAdapter(REALM, public_url="http://p")
    assert isinstance(adapter, RegistrableScopes)
    source = registrable_scopes_source(adapter, "mcp", ScopeSettings(allowed=("mcp", "service_account")))
    assert source is not None
    assert await source() == frozenset({"mcp"})
    adapter.scopes = REALM | {"service_account"}
    assert await source() == frozenset({"mcp", "service_account"})
    assert adapter.asked == ["mcp", "mcp"]


def test_nothing_to_ask_without_the_capability_and_without_an_allow_list() -> None:
    adapter: ProviderAdapter = PlainAdapter()
    assert not isinstance(adapter, RegistrableScopes)
    assert registrable_scopes_source(adapter, "default", ScopeSettings()) is None


async def test_an_adapter_without_the_capability_is_limited_by_the_allow_list_alone() -> None:
    adapter: ProviderAdapter = PlainAdapter()
    source = registrable_scopes_source(adapter, "default", ScopeSettings(allowed=("mcp",)))
    assert source is not None
    assert await source() == frozenset({"mcp"})


async def test_an_adapter_without_a_provider_limit_and_no_allow_list_limits_nothing() -> None:
    source = registrable_scopes_source(MemoryAdapter(public_url="http://p"), "default", ScopeSettings())
    assert source is not None  # the memory adapter has the capability and answers "no limit"
    assert await source() is None


# ------------------------------------------------------------------------------- the app, end to end

Gateway = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def gateway(aiohttp_server: AiohttpServer) -> AsyncIterator[Gateway]:
    clients: list[TestClient[Any, Any]] = []

    async def make(adapter_scopes: frozenset[str] | None, **policy: Any) -> TestClient[Any, Any]:
        provider = FakeProvider(keycloak_document(issuer=PUBLIC + ISSUER_PATH))
        provider.server = await aiohttp_server(provider.app())
        upstream = str(provider.server.make_url("")).rstrip("/")
        settings = Settings(public_url=PUBLIC, provider="memory", provider_url=upstream, policy=policy)
        adapter = ScopedMemoryAdapter(adapter_scopes, public_url=upstream, issuer_path=ISSUER_PATH)
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings, adapter=adapter), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def _advertised(client: TestClient[Any, Any]) -> list[str]:
    response = await client.get(f"/.well-known/oauth-authorization-server{ISSUER_PATH}")
    assert response.status == 200
    scopes: list[str] = (await response.json())["scopes_supported"]
    return scopes


async def test_the_app_advertises_what_the_adapter_can_attach(gateway: Gateway) -> None:
    client = await gateway(REALM)
    assert await _advertised(client) == ["openid", "basic", "profile", "email", "offline_access"]


async def test_the_app_advertises_what_adapter_and_allow_list_both_allow_and_registers_all_of_it(
    gateway: Gateway,
) -> None:
    client = await gateway(REALM, scopes={"allowed": ["openid", "profile", "mcp", "service_account"], "mode": "strict"})
    advertised = await _advertised(client)
    assert advertised == ["openid", "profile"]  # service_account: not attachable; mcp: not advertised upstream
    response = await client.post(
        f"{ISSUER_PATH}/register",
        json={
            "redirect_uris": ["http://127.0.0.1:3000/callback"],
            "token_endpoint_auth_method": "none",
            "scope": " ".join(advertised),
        },
    )
    assert response.status == 201, await response.text()
    assert (await response.json())["scope"].split() == advertised


async def test_the_app_serves_the_providers_scopes_when_nothing_limits_them(gateway: Gateway) -> None:
    client = await gateway(None, scopes={"include_advertised": True})
    assert await _advertised(client) == keycloak_document()["scopes_supported"]
