"""Registration policies through real gateways in front of the real Keycloak and the real Hydra.

Each policy runs in a gateway app of its own (in-process, ``create_app`` + aiohttp's test server): in front of
Hydra its ``public_url`` is Hydra's issuer (the session's ``hydra_gateway`` origin, through which the
authorization flows run); in front of Keycloak it listens on a free port of its own (Keycloak follows
X-Forwarded-*), and flows run through its own front door.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from devstack.process import free_port
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.app import create_app
from gateway.settings import Settings
from gateway.testing.mcp_client_bodies import MCP_CLIENT_BODIES
from tests.integration.conftest import (
    GatewayProcess,
    client_count,
    client_record,
    hydra_options,
    hydra_target,
    keycloak_adapter_for,
    keycloak_admin_headers,
    keycloak_options,
    keycloak_target,
)
from tests.integration.flows import Target, authorization_code_flow

PROVIDERS = ["hydra", "keycloak"]
ALLOWED_SCOPES = ["openid", "offline_access", "mcp"]
STRICT_PUBLIC_ONLY = {"scopes": {"allowed": ALLOWED_SCOPES, "mode": "strict"}, "token_endpoint_auth_methods": ["none"]}
LENIENT = {"scopes": {"allowed": ALLOWED_SCOPES, "mode": "lenient"}}
DEFAULT: dict[str, Any] = {}


@dataclass(frozen=True)
class PolicyGateway:
    """A gateway app with one policy, and how to reach and inspect its provider."""

    target: Target
    """Flows: through the gateway's front door (Keycloak) or the session gateway on Hydra's issuer."""
    registration_endpoint: str
    record: Callable[[aiohttp.ClientSession, str], Awaitable[dict[str, Any] | None]]
    """The provider's own record of a client (admin API), ``None`` when there is none."""
    count: Callable[[aiohttp.ClientSession], Awaitable[int]]
    """How many clients the provider holds (managed or not)."""


async def _start(settings: Settings, port: int | None = None) -> TestServer:
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def _keycloak_record(
    keycloak: KeycloakProvider, http: aiohttp.ClientSession, client_id: str
) -> dict[str, Any] | None:
    """:func:`client_record`, with the client's default and optional client scopes (``_default_scopes``,
    ``_optional_scopes``)."""
    found = await client_record(keycloak, http, client_id)
    if found is None:
        return None
    headers = await keycloak_admin_headers(http, keycloak)
    async with http.get(f"{keycloak.admin_realm_url}/clients/{found['id']}", headers=headers) as r:
        record: dict[str, Any] = await r.json()
    for kind in ("default", "optional"):
        async with http.get(
            f"{keycloak.admin_realm_url}/clients/{found['id']}/{kind}-client-scopes", headers=headers
        ) as r:
            record[f"_{kind}_scopes"] = sorted(scope["name"] for scope in await r.json())
    return record


GatewayFactory = Callable[[str, dict[str, Any]], Awaitable[PolicyGateway]]


@pytest.fixture(scope="module")
async def policy_gateway(request: pytest.FixtureRequest) -> AsyncIterator[GatewayFactory]:
    """``await policy_gateway(provider, policy)``: a gateway app with that policy (one per provider and policy,
    kept for the module). Rate limits are off: these tests register many clients from one address."""
    servers: dict[str, tuple[TestServer, PolicyGateway]] = {}

    async def factory(provider: str, policy: dict[str, Any]) -> PolicyGateway:
        key = f"{provider}:{json.dumps(policy, sort_keys=True)}"
        if key in servers:
            return servers[key][1]
        common = {"policy": policy, "limits": {"enabled": False}, "log_format": "console"}
        if provider == "hydra":
            hydra: HydraProvider = request.getfixturevalue("hydra_provider")
            session_gateway: GatewayProcess = request.getfixturevalue("hydra_gateway")
            server = await _start(Settings.model_validate({**hydra_options(hydra), **common}))
            gateway = PolicyGateway(
                target=hydra_target(hydra, session_gateway),
                registration_endpoint=str(server.make_url("/register")),
                record=functools.partial(client_record, hydra),
                count=functools.partial(client_count, hydra),
            )
        else:
            keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            server = await _start(Settings.model_validate({**keycloak_options(keycloak, url), **common}), port)
            target = keycloak_target(keycloak, url)
            gateway = PolicyGateway(
                target=target,
                registration_endpoint=target.registration_endpoint,
                record=functools.partial(_keycloak_record, keycloak),
                count=functools.partial(client_count, keycloak),
            )
        servers[key] = (server, gateway)
        return gateway

    yield factory
    for server, _ in servers.values():
        await server.close()


async def post(http: aiohttp.ClientSession, gateway: PolicyGateway, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(gateway.registration_endpoint, json=body) as response:
        payload: dict[str, Any] = await response.json()
        return response.status, payload


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("provider", "name"),
    [(provider, name) for provider in PROVIDERS for name in MCP_CLIENT_BODIES],
    ids=[f"{provider}-{name}" for provider in PROVIDERS for name in MCP_CLIENT_BODIES],
)
async def test_every_mcp_client_body_registers_with_the_default_policy(
    policy_gateway: GatewayFactory, http: aiohttp.ClientSession, provider: str, name: str
) -> None:
    gateway = await policy_gateway(provider, DEFAULT)
    body = MCP_CLIENT_BODIES[name]
    status, client = await post(http, gateway, body)
    assert status == 201, client
    assert client["redirect_uris"] == body["redirect_uris"]
    assert client["token_endpoint_auth_method"] == body.get("token_endpoint_auth_method", "client_secret_basic")
    assert await gateway.record(http, client["client_id"]) is not None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_strict_scopes_reject_an_unknown_scope_naming_it_and_create_nothing(
    policy_gateway: GatewayFactory, http: aiohttp.ClientSession, provider: str
) -> None:
    gateway = await policy_gateway(provider, STRICT_PUBLIC_ONLY)
    body = {
        "client_name": "strict scope",
        "redirect_uris": ["http://127.0.0.1:3000/callback"],
        "token_endpoint_auth_method": "none",
        "scope": "openid mcp admin",
    }
    before = await gateway.count(http)
    status, error = await post(http, gateway, body)
    assert status == 400
    assert error["error"] == "invalid_client_metadata"
    assert "'admin' is not allowed" in error["error_description"]
    assert error["error_description"].startswith("scope 'openid mcp admin'")
    assert await gateway.count(http) == before
    status, client = await post(http, gateway, {**body, "scope": "openid mcp"})
    assert status == 201, client
    assert client["scope"] == "openid mcp"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_lenient_scopes_drop_an_unknown_scope_and_keep_the_providers_defaults(
    policy_gateway: GatewayFactory, http: aiohttp.ClientSession, provider: str
) -> None:
    gateway = await policy_gateway(provider, LENIENT)
    redirect = "http://127.0.0.1:3000/callback"
    status, client = await post(
        http,
        gateway,
        {
            "redirect_uris": [redirect],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": "openid offline_access admin mcp",
        },
    )
    assert status == 201, client
    assert client["scope"] == "openid offline_access mcp"
    record = await gateway.record(http, client["client_id"])
    assert record is not None
    if provider == "hydra":
        assert record["scope"] == "openid offline_access mcp"
    else:
        # the realm's default scopes stay; the named realm scopes are optional ones; "admin" is nowhere
        assert {"basic", "email", "profile", "roles", "web-origins", "acr"} <= set(record["_default_scopes"])
        assert {"mcp", "offline_access"} <= set(record["_optional_scopes"])
        assert "admin" not in record["_default_scopes"] + record["_optional_scopes"]
    # Keycloak: offline tokens need a role mapping that full-scope-off clients lack; its refresh tokens are online
    scope = "openid offline_access mcp" if provider == "hydra" else "openid mcp"
    result = await authorization_code_flow(http, gateway.target, client, redirect_uri=redirect, scope=scope)
    granted = result.tokens["scope"].split()
    assert "mcp" in granted and "admin" not in granted
    if provider == "keycloak":
        assert "email" in granted  # a realm default scope survived the registration that named scopes


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_public_only_policy_answers_a_secret_method_with_none_and_the_client_gets_tokens(
    policy_gateway: GatewayFactory, http: aiohttp.ClientSession, provider: str
) -> None:
    gateway = await policy_gateway(provider, STRICT_PUBLIC_ONLY)
    python_sdk = {k: v for k, v in MCP_CLIENT_BODIES["python sdk"].items() if k != "scope"}
    redirect = "http://localhost:3000/callback"
    assert python_sdk["redirect_uris"] == [redirect] and "token_endpoint_auth_method" not in python_sdk
    for body in (python_sdk, {**python_sdk, "token_endpoint_auth_method": "client_secret_basic"}):
        status, client = await post(http, gateway, body)
        assert status == 201, client
        assert client["token_endpoint_auth_method"] == "none"
        assert "client_secret" not in client
    record = await gateway.record(http, client["client_id"])
    assert record is not None
    if provider == "hydra":
        assert record["token_endpoint_auth_method"] == "none"
    else:
        assert record["publicClient"] is True
    result = await authorization_code_flow(http, gateway.target, client, redirect_uri=redirect)
    assert result.tokens["access_token"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_policy_holds_on_update_consent_comes_back_after_tampering(
    policy_gateway: GatewayFactory, http: aiohttp.ClientSession, provider: str, request: pytest.FixtureRequest
) -> None:
    """Consent is forced on create and on every update (Keycloak's "Consent Required" policy "cannot be disabled
    on update"): a record whose consent was switched off by someone is switched back by the next update."""
    from adapters.base import NewClient, ProviderAdapter
    from adapters.hydra.adapter import HydraAdapter

    gateway = await policy_gateway(provider, DEFAULT)
    status, client = await post(
        http, gateway, {"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "none"}
    )
    assert status == 201, client
    adapter: ProviderAdapter
    if provider == "hydra":
        hydra: HydraProvider = request.getfixturevalue("hydra_provider")
        record = await gateway.record(http, client["client_id"])
        assert record is not None and record["skip_consent"] is False
        async with http.patch(
            f"{hydra.admin_url}/admin/clients/{client['client_id']}",
            json=[{"op": "replace", "path": "/skip_consent", "value": True}],
        ) as response:
            assert response.status == 200
        adapter, issuer = HydraAdapter(admin_url=hydra.admin_url, public_url=hydra.public_url), "default"
    else:
        keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
        record = await gateway.record(http, client["client_id"])
        assert record is not None and record["consentRequired"] is True
        headers = await keycloak_admin_headers(http, keycloak)
        tampered = {**record, "consentRequired": False, "fullScopeAllowed": True}
        tampered = {k: v for k, v in tampered.items() if not k.startswith("_")}
        async with http.put(
            f"{keycloak.admin_realm_url}/clients/{record['id']}", json=tampered, headers=headers
        ) as response:
            assert response.status == 204
        adapter, issuer = keycloak_adapter_for(keycloak), keycloak.realm
    tampered_record = await gateway.record(http, client["client_id"])
    assert tampered_record is not None
    assert tampered_record.get("skip_consent", not tampered_record.get("consentRequired")) is True
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        try:
            stored = await adapter.read_client(issuer, client["client_id"])
            renamed = stored.metadata.model_copy(update={"client_name": "updated"})
            await adapter.update_client(
                issuer,
                NewClient(
                    client_id=client["client_id"],
                    client_secret=None,
                    client_id_issued_at=0,
                    client_secret_expires_at=0,
                    metadata=renamed,
                ),
            )
        finally:
            await adapter.close()
    record = await gateway.record(http, client["client_id"])
    assert record is not None
    if provider == "hydra":
        assert record["skip_consent"] is False
        assert record["client_name"] == "updated"
    else:
        assert record["consentRequired"] is True
        assert record["fullScopeAllowed"] is False
        assert record["name"] == "updated"
