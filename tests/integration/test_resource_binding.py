"""RFC 8707 resource indicators on the real providers (:class:`adapters.base.ResourceIndicators`).

After ``bind_resource``, an authorization-code flow that names the binding (Keycloak: the resource's client scope
in ``scope``; Hydra: ``audience``, granted by the consent step as the dev login app does) yields an access token
whose ``aud`` contains the resource, and the refreshed token keeps it. Repeated bindings cost no admin call;
concurrent first bindings of one resource on Keycloak create one client scope.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

import aiohttp
import pytest

from adapters.base import ResourceBinding
from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.adapter import KeycloakAdapter
from adapters.keycloak.mapping import AUDIENCE_MAPPER
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.testing.adapter_contract import new_client, registration
from tests.integration.conftest import (
    GatewayProcess,
    hydra_target,
    keycloak_adapter_for,
    keycloak_admin_headers,
    keycloak_target,
)
from tests.integration.flows import LOOPBACK_CALLBACK, authorization_code_flow, native_client

RESOURCE = "http://127.0.0.1:8000/mcp"


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT straight from the token endpoint (read, not verified: the test talks to it directly)."""
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else list(aud or [])


class CallCounter:
    """Counts the admin calls an adapter makes (each goes through its ``_call``)."""

    def __init__(self, adapter: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = adapter._call

        async def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await original(*args, **kwargs)

        monkeypatch.setattr(adapter, "_call", counting)


async def keycloak_scopes(http: aiohttp.ClientSession, keycloak: KeycloakProvider) -> list[dict[str, Any]]:
    async with http.get(
        f"{keycloak.admin_realm_url}/client-scopes", headers=await keycloak_admin_headers(http, keycloak)
    ) as response:
        assert response.status == 200
        scopes: list[dict[str, Any]] = await response.json()
        return scopes


async def test_keycloak_token_for_a_bound_resource_carries_it_in_aud_also_after_refresh(
    keycloak_provider: KeycloakProvider,
    keycloak_adapter: KeycloakAdapter,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    realm = keycloak_provider.realm
    client = new_client(registration(native_client("resource binding"), keycloak_adapter))
    await keycloak_adapter.create_client(realm, client)
    try:
        resource = f"{RESOURCE}/{uuid.uuid4()}"
        binding = await keycloak_adapter.bind_resource(realm, client.client_id, resource)
        assert binding.scope and binding.audience is None
        counter = CallCounter(keycloak_adapter, monkeypatch)
        assert await keycloak_adapter.bind_resource(realm, client.client_id, resource) == binding
        assert counter.calls == 0, "a repeated binding called the admin API"

        scope = next(s for s in await keycloak_scopes(http, keycloak_provider) if s["name"] == binding.scope)
        assert scope["attributes"]["include.in.token.scope"] == "false"
        assert scope["attributes"]["consent.screen.text"] == resource
        [mapper] = [m for m in scope["protocolMappers"] if m["name"] == AUDIENCE_MAPPER]
        assert mapper["protocolMapper"] == "oidc-audience-mapper"
        assert mapper["config"]["included.custom.audience"] == resource

        target = keycloak_target(keycloak_provider, keycloak_provider.base_url)
        registered = {"client_id": client.client_id, "token_endpoint_auth_method": "none"}
        result = await authorization_code_flow(
            http, target, registered, redirect_uri=LOOPBACK_CALLBACK, scope=f"openid {binding.scope}"
        )
        assert resource in audiences(jwt_claims(result.tokens["access_token"]))
        assert resource in audiences(jwt_claims(result.refreshed["access_token"])), "the refresh lost the audience"
        assert binding.scope not in result.tokens.get("scope", "").split(), "the binding scope is in `scope`"

        # without the scope, no audience: the binding is what puts it there
        plain = await authorization_code_flow(http, target, registered, redirect_uri=LOOPBACK_CALLBACK)
        assert resource not in audiences(jwt_claims(plain.tokens["access_token"]))

        # an RFC 7592 replacement keeps the binding (it is the adapter's, not metadata)
        await keycloak_adapter.update_client(realm, client)
        again = await authorization_code_flow(
            http, target, registered, redirect_uri=LOOPBACK_CALLBACK, scope=f"openid {binding.scope}"
        )
        assert resource in audiences(jwt_claims(again.tokens["access_token"])), "an update dropped the binding"
    finally:
        await keycloak_adapter.delete_client(realm, client.client_id)


async def test_keycloak_concurrent_first_bindings_create_one_client_scope(
    keycloak_provider: KeycloakProvider, keycloak_adapter: KeycloakAdapter, http: aiohttp.ClientSession
) -> None:
    realm = keycloak_provider.realm
    other = keycloak_adapter_for(keycloak_provider)  # a second gateway instance: its own locks and caches
    await other.start(http)
    clients = [new_client(registration(native_client(f"concurrent {i}"), keycloak_adapter)) for i in range(3)]
    for client in clients:
        await keycloak_adapter.create_client(realm, client)
    try:
        resource = f"{RESOURCE}/{uuid.uuid4()}"
        bindings = await asyncio.gather(
            keycloak_adapter.bind_resource(realm, clients[0].client_id, resource),
            keycloak_adapter.bind_resource(realm, clients[1].client_id, resource),
            other.bind_resource(realm, clients[2].client_id, resource),
            other.bind_resource(realm, clients[0].client_id, resource),
        )
        assert len(set(bindings)) == 1
        named = [s for s in await keycloak_scopes(http, keycloak_provider) if s["name"] == bindings[0].scope]
        assert len(named) == 1, f"{len(named)} client scopes for one resource"
        headers = await keycloak_admin_headers(http, keycloak_provider)
        for client in clients:
            internal = (await keycloak_adapter._find_any(realm, client.client_id) or {})["id"]
            async with http.get(
                f"{keycloak_provider.admin_realm_url}/clients/{internal}/optional-client-scopes", headers=headers
            ) as response:
                assert bindings[0].scope in {s["name"] for s in await response.json()}
    finally:
        for client in clients:
            await keycloak_adapter.delete_client(realm, client.client_id)
        await other.close()


async def test_keycloak_unmanaged_client_is_not_changed(
    keycloak_provider: KeycloakProvider, keycloak_adapter: KeycloakAdapter, http: aiohttp.ClientSession
) -> None:
    realm = keycloak_provider.realm
    resource = f"{RESOURCE}/{uuid.uuid4()}"
    binding = await keycloak_adapter.bind_resource(realm, keycloak_provider.legacy_client_id, resource)
    assert binding == ResourceBinding(scope=binding.scope)
    internal = (await keycloak_adapter._find_any(realm, keycloak_provider.legacy_client_id) or {})["id"]
    async with http.get(
        f"{keycloak_provider.admin_realm_url}/clients/{internal}/optional-client-scopes",
        headers=await keycloak_admin_headers(http, keycloak_provider),
    ) as response:
        assert binding.scope not in {s["name"] for s in await response.json()}


async def hydra_introspect(http: aiohttp.ClientSession, hydra: HydraProvider, token: str) -> dict[str, Any]:
    async with http.post(f"{hydra.admin_url}/admin/oauth2/introspect", data={"token": token}) as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
        assert answer["active"] is True
        answer.setdefault("aud", [])
        return answer


async def test_hydra_token_for_a_bound_resource_carries_it_in_aud_also_after_refresh(
    hydra_provider: HydraProvider,
    hydra_gateway: GatewayProcess,
    hydra_adapter: HydraAdapter,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    issuer = "default"
    client = new_client(registration(native_client("resource binding"), hydra_adapter))
    await hydra_adapter.create_client(issuer, client)
    try:
        target = hydra_target(hydra_provider, hydra_gateway)
        registered = {"client_id": client.client_id, "token_endpoint_auth_method": "none"}
        resource = f"{RESOURCE}/{uuid.uuid4()}"
        with pytest.raises(AssertionError):  # before the binding Hydra refuses the audience
            await authorization_code_flow(
                http, target, registered, redirect_uri=LOOPBACK_CALLBACK, extra={"audience": resource}
            )
        binding = await hydra_adapter.bind_resource(issuer, client.client_id, resource)
        assert binding == ResourceBinding(audience=resource)
        counter = CallCounter(hydra_adapter, monkeypatch)
        assert await hydra_adapter.bind_resource(issuer, client.client_id, resource) == binding
        assert counter.calls == 0, "a repeated binding called the admin API"

        result = await authorization_code_flow(
            http, target, registered, redirect_uri=LOOPBACK_CALLBACK, extra={"audience": resource}
        )
        # Hydra revokes the first access token on refresh: what the code granted shows in the refreshed token,
        # which can only narrow it (RFC 6749 section 6)
        refreshed = await hydra_introspect(http, hydra_provider, result.refreshed["access_token"])
        assert resource in refreshed["aud"], "the token (or its refresh) lost the audience"
        # without the audience parameter, none: the binding is what puts it there
        plain = await authorization_code_flow(http, target, registered, redirect_uri=LOOPBACK_CALLBACK)
        assert resource not in (await hydra_introspect(http, hydra_provider, plain.refreshed["access_token"]))["aud"]

        # an RFC 7592 replacement keeps the audience list (adapter state, not metadata)
        await hydra_adapter.update_client(issuer, client)
        async with http.get(f"{hydra_provider.admin_url}/admin/clients/{client.client_id}") as response:
            assert resource in (await response.json())["audience"], "an update dropped the binding"
    finally:
        await hydra_adapter.delete_client(issuer, client.client_id)


async def test_hydra_unmanaged_client_is_not_changed(
    hydra_provider: HydraProvider, hydra_adapter: HydraAdapter, http: aiohttp.ClientSession
) -> None:
    client_id = f"unmanaged-{uuid.uuid4()}"
    body = {"client_id": client_id, "redirect_uris": ["https://legacy.example/cb"]}
    async with http.post(f"{hydra_provider.admin_url}/admin/clients", json=body) as response:
        assert response.status == 201
    try:
        binding = await hydra_adapter.bind_resource("default", client_id, RESOURCE)
        assert binding == ResourceBinding(audience=RESOURCE)
        async with http.get(f"{hydra_provider.admin_url}/admin/clients/{client_id}") as response:
            assert RESOURCE not in ((await response.json()).get("audience") or [])
    finally:
        async with http.delete(f"{hydra_provider.admin_url}/admin/clients/{client_id}") as response:
            assert response.status == 204


async def test_keycloak_a_resource_scope_deleted_in_keycloak_is_made_again(
    keycloak_provider: KeycloakProvider, keycloak_adapter: KeycloakAdapter, http: aiohttp.ClientSession
) -> None:
    """The adapter caches the scope's id; an administrator deleting the scope must not break later bindings."""
    realm = keycloak_provider.realm
    clients = [new_client(registration(native_client(f"rebind {i}"), keycloak_adapter)) for i in range(2)]
    for client in clients:
        await keycloak_adapter.create_client(realm, client)
    try:
        resource = f"{RESOURCE}/{uuid.uuid4()}"
        binding = await keycloak_adapter.bind_resource(realm, clients[0].client_id, resource)
        headers = await keycloak_admin_headers(http, keycloak_provider)
        scope = next(s for s in await keycloak_scopes(http, keycloak_provider) if s["name"] == binding.scope)
        async with http.delete(f"{keycloak_provider.admin_realm_url}/client-scopes/{scope['id']}", headers=headers):
            pass
        assert await keycloak_adapter.bind_resource(realm, clients[1].client_id, resource) == binding
        named = [s for s in await keycloak_scopes(http, keycloak_provider) if s["name"] == binding.scope]
        assert len(named) == 1 and named[0]["id"] != scope["id"]
        internal = (await keycloak_adapter._find_any(realm, clients[1].client_id) or {})["id"]
        async with http.get(
            f"{keycloak_provider.admin_realm_url}/clients/{internal}/optional-client-scopes", headers=headers
        ) as response:
            assert binding.scope in {s["name"] for s in await response.json()}
    finally:
        for client in clients:
            await keycloak_adapter.delete_client(realm, client.client_id)


async def test_keycloak_a_replacement_naming_scopes_keeps_the_binding(
    keycloak_provider: KeycloakProvider, keycloak_adapter: KeycloakAdapter, http: aiohttp.ClientSession
) -> None:
    """A registration naming scopes sets the client's optional scopes explicitly: an update must not drop the
    resource's scope from them."""
    realm = keycloak_provider.realm
    client = new_client(registration(native_client("scoped", scope="openid mcp"), keycloak_adapter))
    await keycloak_adapter.create_client(realm, client)
    try:
        binding = await keycloak_adapter.bind_resource(realm, client.client_id, f"{RESOURCE}/{uuid.uuid4()}")
        await keycloak_adapter.update_client(realm, client)
        internal = (await keycloak_adapter._find_any(realm, client.client_id) or {})["id"]
        async with http.get(
            f"{keycloak_provider.admin_realm_url}/clients/{internal}/optional-client-scopes",
            headers=await keycloak_admin_headers(http, keycloak_provider),
        ) as response:
            assert binding.scope in {s["name"] for s in await response.json()}, "an update dropped the binding"
    finally:
        await keycloak_adapter.delete_client(realm, client.client_id)
