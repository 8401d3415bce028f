"""The gateway in front of the real Keycloak and the real Hydra, through its front door.

Each test runs once per provider. Registration responses are checked against what the provider then
enforces: the echoed auth method works at the token endpoint, loopback clients work from another port,
and unmanaged clients stay out of reach.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from adapters.base import NewClient, ProviderAdapter
from adapters.hydra.adapter import HydraAdapter
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.conformance.headless import ConsentRequired, keycloak_form_login
from gateway.oauth.metadata import ClientMetadata
from tests.integration.conftest import (
    GatewayProcess,
    keycloak_adapter_for,
    keycloak_admin_headers,
    keycloak_target,
    target_record,
)
from tests.integration.flows import (
    LOOPBACK_CALLBACK,
    WEB_CALLBACK,
    Target,
    authorization_code_flow,
    confidential_client,
    discover,
    native_client,
    register,
)


@pytest.fixture
async def adapter(request: pytest.FixtureRequest, target: Target) -> AsyncIterator[tuple[ProviderAdapter, str]]:
    """The provider's adapter, used directly to check what the provider really holds."""
    instance: ProviderAdapter
    if target.provider == "hydra":
        hydra: HydraProvider = request.getfixturevalue("hydra_provider")
        instance = HydraAdapter(admin_url=hydra.admin_url, public_url=hydra.public_url)
        issuer_key = "default"
    else:
        keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
        instance = keycloak_adapter_for(keycloak)
        issuer_key = keycloak.realm
    async with aiohttp.ClientSession() as session:
        await instance.start(session)
        try:
            yield instance, issuer_key
        finally:
            await instance.close()


async def managed_ids(adapter: tuple[ProviderAdapter, str]) -> set[str]:
    instance, issuer = adapter
    return {client.client_id async for client in instance.list_clients(issuer)}


# ------------------------------------------------------------------------------------- discovery


def discovery_urls(target: Target) -> list[str]:
    path = target.issuer[len(target.url) :]
    if path:
        return [
            f"{target.url}/.well-known/oauth-authorization-server{path}",
            f"{target.url}/.well-known/openid-configuration{path}",
            f"{target.issuer}/.well-known/openid-configuration",
            f"{target.issuer}/.well-known/oauth-authorization-server",
        ]
    return [f"{target.url}/.well-known/oauth-authorization-server", f"{target.url}/.well-known/openid-configuration"]


async def test_discovery_is_served_at_every_probed_location_with_the_providers_issuer(
    target: Target, http: aiohttp.ClientSession
) -> None:
    for url in discovery_urls(target):
        async with http.get(url, headers={"Origin": "http://localhost:6274"}) as response:
            assert response.status == 200, url
            assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:6274")
            document = await response.json()
        assert document["issuer"] == target.issuer, url
        assert document["registration_endpoint"] == target.registration_endpoint
        assert "S256" in document["code_challenge_methods_supported"]
        assert "code" in document["response_types_supported"]
        assert document["token_endpoint"].startswith(target.url)
        assert document["authorization_endpoint"].startswith(target.url)


async def test_unknown_issuer_discovery_is_404_not_5xx(target: Target, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{target.url}/.well-known/oauth-authorization-server/realms/nope") as response:
        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


async def test_front_door_proxies_the_providers_jwks(target: Target, http: aiohttp.ClientSession) -> None:
    document = await discover(http, target)
    async with http.get(document["jwks_uri"]) as response:
        assert response.status == 200
        assert (await response.json())["keys"]


# ------------------------------------------------------------------------------------ registration


async def test_public_native_client_with_loopback_redirect_works_from_another_port(
    target: Target, http: aiohttp.ClientSession, adapter: tuple[ProviderAdapter, str]
) -> None:
    status, client = await register(
        http,
        target,
        native_client("Native CLI"),
    )
    assert status == 201, client
    assert "client_secret" not in client
    assert client["token_endpoint_auth_method"] == "none"
    assert client["redirect_uris"] == ["http://127.0.0.1:3000/callback"]
    assert client["application_type"] == "native"
    assert isinstance(client["client_id_issued_at"], int)
    # registered on port 3000, used from port 51234 (RFC 8252 section 7.3)
    await authorization_code_flow(http, target, client, redirect_uri="http://127.0.0.1:51234/callback")
    # and the registered port itself works too
    await authorization_code_flow(http, target, client, redirect_uri="http://127.0.0.1:3000/callback")
    stored = await adapter[0].read_client(adapter[1], client["client_id"])
    assert stored.metadata.redirect_uris == client["redirect_uris"]
    assert stored.metadata.application_type == "native"


async def test_public_web_client_with_https_redirect(target: Target, http: aiohttp.ClientSession) -> None:
    status, client = await register(
        http,
        target,
        {
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "client_name": "Claude",
            "application_type": "web",
        },
    )
    assert status == 201, client
    assert "client_secret" not in client
    await authorization_code_flow(http, target, client, redirect_uri="https://claude.ai/api/mcp/auth_callback")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
async def test_confidential_client_authenticates_with_the_echoed_method(
    target: Target, http: aiohttp.ClientSession, adapter: tuple[ProviderAdapter, str], method: str
) -> None:
    status, client = await register(
        http,
        target,
        confidential_client(
            f"Confidential {method}",
            method,
            contacts=["ops@example.com"],
            software_id="acme-mcp",
            software_version="1.2.3",
        ),
    )
    assert status == 201, client
    assert client["token_endpoint_auth_method"] == method
    assert len(client["client_secret"]) >= 43
    assert client["client_secret_expires_at"] == 0
    assert client["contacts"] == ["ops@example.com"]
    await authorization_code_flow(http, target, client, redirect_uri=WEB_CALLBACK)
    stored = await adapter[0].read_client(adapter[1], client["client_id"])
    assert stored.metadata.token_endpoint_auth_method == method
    assert stored.metadata.software_id == "acme-mcp"
    assert stored.metadata.contacts == ["ops@example.com"]


async def test_python_sdk_default_body_registers_a_confidential_basic_client(
    target: Target, http: aiohttp.ClientSession
) -> None:
    status, client = await register(
        http,
        target,
        {
            "client_name": "Example MCP Client",
            "redirect_uris": ["http://localhost:3000/callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "scope": "openid offline_access",
        },
    )
    assert status == 201, client
    assert client["token_endpoint_auth_method"] == "client_secret_basic"
    assert client["client_secret"]
    await authorization_code_flow(http, target, client, redirect_uri="http://localhost:3000/callback")


async def test_client_chosen_client_id_and_secret_are_ignored(target: Target, http: aiohttp.ClientSession) -> None:
    status, client = await register(
        http,
        target,
        {
            "client_id": "i-choose-my-id",
            "client_secret": "i-choose-my-secret-0123456789",
            "redirect_uris": ["https://app.example.com/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )
    assert status == 201, client
    assert client["client_id"] != "i-choose-my-id"
    assert client["client_secret"] != "i-choose-my-secret-0123456789"


async def test_registration_response_is_not_cacheable_and_cors_readable(
    target: Target, http: aiohttp.ClientSession
) -> None:
    body = {"redirect_uris": ["http://localhost:6274/oauth/callback"], "token_endpoint_auth_method": "none"}
    async with http.post(
        target.registration_endpoint, json=body, headers={"Origin": "http://localhost:6274"}
    ) as response:
        assert response.status == 201
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Access-Control-Allow-Origin"] in ("*", "http://localhost:6274")
    async with http.options(
        target.registration_endpoint,
        headers={
            "Origin": "http://localhost:6274",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    ) as response:
        assert response.status == 204
        assert "POST" in response.headers["Access-Control-Allow-Methods"]


BAD_BODIES: dict[str, tuple[Any, int, str]] = {
    "fragment": ({"redirect_uris": ["https://a.example/cb#frag"]}, 400, "invalid_redirect_uri"),
    "userinfo": ({"redirect_uris": ["https://client.test@attacker.test/cb"]}, 400, "invalid_redirect_uri"),
    "wildcard": ({"redirect_uris": ["https://a.example/*"]}, 400, "invalid_redirect_uri"),
    "javascript": ({"redirect_uris": ["javascript:alert(1)"]}, 400, "invalid_redirect_uri"),
    "http remote": ({"redirect_uris": ["http://a.example/cb"]}, 400, "invalid_redirect_uri"),
    "password grant": (
        {"redirect_uris": ["https://a.example/cb"], "grant_types": ["password"]},
        400,
        "invalid_client_metadata",
    ),
    "client_credentials": (
        {"redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code", "client_credentials"]},
        400,
        "invalid_client_metadata",
    ),
    "implicit": (
        {"redirect_uris": ["https://a.example/cb"], "response_types": ["token"]},
        400,
        "invalid_client_metadata",
    ),
    "json null": (None, 400, "invalid_client_metadata"),
    "json array": ([1, 2], 400, "invalid_client_metadata"),
    "jwks and jwks_uri": (
        {
            "redirect_uris": ["https://a.example/cb"],
            "jwks_uri": "https://a.example/jwks",
            "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]},
        },
        400,
        "invalid_client_metadata",
    ),
}


@pytest.mark.parametrize(("body", "status", "error"), BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_bad_registrations_get_the_rfc_error_and_create_nothing(
    target: Target,
    http: aiohttp.ClientSession,
    adapter: tuple[ProviderAdapter, str],
    body: Any,
    status: int,
    error: str,
) -> None:
    before = await managed_ids(adapter)
    async with http.post(target.registration_endpoint, json=body) as response:
        assert response.status == status
        assert response.headers["Content-Type"].startswith("application/json")
        payload = await response.json()
    assert payload["error"] == error
    assert payload["error_description"]
    assert await managed_ids(adapter) == before


async def test_non_json_and_oversized_bodies(
    target: Target, http: aiohttp.ClientSession, adapter: tuple[ProviderAdapter, str]
) -> None:
    before = await managed_ids(adapter)
    async with http.post(
        target.registration_endpoint, data=b"{not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_client_metadata"
    huge = b'{"redirect_uris": ["https://a.example/cb"], "client_name": "' + b"x" * 70_000 + b'"}'
    async with http.post(
        target.registration_endpoint, data=huge, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 413
        assert (await response.json())["error"] == "invalid_client_metadata"
    assert await managed_ids(adapter) == before


# ------------------------------------------------------------------------------- unmanaged clients


async def test_ipv6_loopback_redirect_works_from_another_port(target: Target, http: aiohttp.ClientSession) -> None:
    status, client = await register(
        http,
        target,
        {
            "redirect_uris": ["http://[::1]:3000/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
        },
    )
    assert status == 201, client
    await authorization_code_flow(http, target, client, redirect_uri="http://[::1]:51234/callback")


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


async def test_registration_naming_scopes_keeps_the_providers_defaults(
    target: Target, http: aiohttp.ClientSession
) -> None:
    requested = f"{target.flow_scope} mcp"
    status, client = await register(
        http,
        target,
        {
            "redirect_uris": ["http://127.0.0.1:3000/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "scope": requested,
        },
    )
    assert status == 201, client
    assert set(client["scope"].split()) == set(requested.split())
    result = await authorization_code_flow(
        http, target, client, redirect_uri="http://127.0.0.1:3000/callback", scope=requested
    )
    assert "mcp" in result.tokens["scope"].split()
    if target.provider == "keycloak":
        claims = _jwt_claims(result.tokens["access_token"])
        assert claims["sub"]  # carried by the realm's default "basic" scope
        assert "mcp" in claims["scope"].split()
        assert "email" in claims["scope"].split()  # a realm default scope survived


async def test_keycloak_admin_api_is_not_reachable_through_the_keycloak_gateway(
    keycloak_gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """The local Keycloak gateway blocks ``/admin`` (``DCR_BLOCKED_PATHS``); Hydra's admin API has its own port."""
    async with http.get(f"{keycloak_gateway.url}/admin/realms/mcp/clients") as response:
        assert response.status == 404
    async with http.get(f"{keycloak_gateway.url}/realms/mcp/protocol/openid-connect/certs") as response:
        assert response.status == 200


async def test_the_providers_own_registration_endpoint_is_closed_at_the_front_door(
    target: Target, http: aiohttp.ClientSession
) -> None:
    path = "/oauth2/register" if target.provider == "hydra" else "/realms/mcp/clients-registrations/openid-connect"
    async with http.post(f"{target.url}{path}", json={"redirect_uris": ["https://a.example/cb"]}) as response:
        assert response.status == 404
        assert target.registration_endpoint in (await response.json())["error_description"]


# ------------------------------------------------------------------- safety of what gets created


async def test_registered_clients_never_skip_consent_and_get_no_full_scope(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession
) -> None:
    status, client = await register(
        http, target, {"redirect_uris": ["https://attacker.example/cb"], "token_endpoint_auth_method": "none"}
    )
    assert status == 201
    record = await target_record(request, target, http, client["client_id"])
    assert record is not None
    if target.provider == "hydra":
        assert record["skip_consent"] is False
        return
    assert record["consentRequired"] is True
    assert record["fullScopeAllowed"] is False
    assert record["implicitFlowEnabled"] is False
    assert record["directAccessGrantsEnabled"] is False
    assert record["serviceAccountsEnabled"] is False
    assert record["attributes"]["pkce.code.challenge.method"] == "S256"
    # a user signing in is asked to consent: the new client gets no code silently
    keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
    document = await discover(http, target)
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": "https://attacker.example/cb",
        "scope": "openid",
        "state": "consent-check",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    }
    with pytest.raises(ConsentRequired):
        await keycloak_form_login(
            http,
            f"{document['authorization_endpoint']}?{urlencode(query)}",
            username=keycloak.username,
            password=keycloak.password,
            accept_consent=False,
        )


def replacement(client_id: str, metadata: ClientMetadata) -> NewClient:
    """An RFC 7592-style full replacement of ``client_id``'s metadata that keeps its secret."""
    return NewClient(
        client_id=client_id, client_secret=None, client_id_issued_at=0, client_secret_expires_at=0, metadata=metadata
    )


async def test_managed_clients_can_be_updated_keeping_the_safe_settings_and_the_secret(
    request: pytest.FixtureRequest,
    target: Target,
    http: aiohttp.ClientSession,
    adapter: tuple[ProviderAdapter, str],
) -> None:
    instance, issuer = adapter
    status, client = await register(
        http,
        target,
        confidential_client("Before", "client_secret_post"),
    )
    assert status == 201
    stored = await instance.read_client(issuer, client["client_id"])
    changed = stored.metadata.model_copy(
        update={"client_name": "After", "redirect_uris": ["https://app.example.com/cb2"]}
    )
    updated = await instance.update_client(issuer, replacement(client["client_id"], changed))
    assert updated.metadata.client_name == "After"
    assert updated.metadata.redirect_uris == ["https://app.example.com/cb2"]
    record = await target_record(request, target, http, client["client_id"])
    assert record is not None
    if target.provider == "keycloak":
        assert record["consentRequired"] is True  # the safe settings survive an update
        assert record["redirectUris"] == ["https://app.example.com/cb2"]
    else:
        assert record["redirect_uris"] == ["https://app.example.com/cb2"]
    # the secret was kept: the client still authenticates with it, at the new redirect URI
    await authorization_code_flow(http, target, client, redirect_uri="https://app.example.com/cb2")


async def test_no_secret_or_token_reaches_the_gateway_log(target: Target, http: aiohttp.ClientSession) -> None:
    status, client = await register(
        http,
        target,
        confidential_client(
            "Log check", "client_secret_basic", client_secret="client-chosen-secret-must-not-be-logged"
        ),
    )
    assert status == 201
    result = await authorization_code_flow(http, target, client, redirect_uri=WEB_CALLBACK)
    async with http.post(
        target.registration_endpoint, json={"redirect_uris": ["javascript:x"], "client_secret": "in-a-bad-request"}
    ) as response:
        assert response.status == 400
    assert target.log_path is not None
    logged = target.log_path.read_text()
    assert client["client_id"] in logged  # the log is the right one, and it is written
    for secret in (
        client["client_secret"],
        "client-chosen-secret-must-not-be-logged",
        "in-a-bad-request",
        result.tokens["access_token"],
        result.tokens["refresh_token"],
        result.refreshed["access_token"],
    ):
        assert secret not in logged


async def test_keycloak_discovery_advertises_only_scopes_a_registration_can_obtain(
    keycloak_provider: KeycloakProvider, keycloak_gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    """RFC 8414 section 2 ``scopes_supported``: Keycloak's own list names ``service_account``, which a dynamically
    registered client never gets (only ``openid`` and the realm's default and default-optional client scopes
    can be attached); MCP clients authorize with the AS's list, so the gateway advertises only what registration
    grants, and every advertised scope is registered and then granted at the authorization endpoint."""
    target = keycloak_target(keycloak_provider, keycloak_gateway.url)
    assert target.issuer == keycloak_gateway.issuer
    upstream_url = f"{keycloak_provider.base_url}/realms/{keycloak_provider.realm}/.well-known/openid-configuration"
    async with http.get(upstream_url) as response:
        assert response.status == 200
        assert "service_account" in (await response.json())["scopes_supported"]  # what the gateway must withhold
    advertised: list[str] = (await discover(http, target))["scopes_supported"]
    assert {"openid", "profile", "email", "offline_access", "mcp"} <= set(advertised)
    assert "service_account" not in advertised

    requested = " ".join(advertised)
    status, client = await register(http, target, {**native_client("Scopes check"), "scope": requested})
    assert status == 201, client
    async with http.get(
        f"{keycloak_provider.admin_realm_url}/default-default-client-scopes",
        headers=await keycloak_admin_headers(http, keycloak_provider),
    ) as response:
        assert response.status == 200
        realm_defaults = {scope["name"] for scope in await response.json()}
    registered = set(client["scope"].split())
    assert [scope for scope in advertised if scope not in registered | realm_defaults] == []
    # and Keycloak grants them: no invalid_scope at the authorization endpoint, a refresh token for offline_access
    result = await authorization_code_flow(http, target, client, redirect_uri=LOOPBACK_CALLBACK, scope=requested)
    granted = set(result.tokens["scope"].split())
    assert {"openid", "profile", "email", "offline_access", "mcp"} <= granted
