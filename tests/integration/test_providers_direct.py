"""The real providers, reached directly (no gateway): the dev realm, the dev config and the headless logins work.

Each provider gets a public client from its admin API, then authorization code + PKCE S256 to a token, then a
refresh. These tests pin down what the gateway builds on; when one fails, the provider setup (deploy/,
devstack/) is wrong, not the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

from devstack.providers import HydraProvider, KeycloakProvider
from gateway.conformance.headless import HeadlessLoginError, hydra_accept_login_and_consent, keycloak_form_login
from tests.integration.conftest import keycloak_admin_headers

REDIRECT_URI = "http://127.0.0.1:3000/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


async def json_of(response: aiohttp.ClientResponse, expected: int) -> Any:
    body = await response.text()
    assert response.status == expected, f"{response.method} {response.url}: {response.status} {body}"
    return await response.json(content_type=None) if body else None


# --- Hydra ---------------------------------------------------------------------------------------------


@pytest.fixture
async def hydra_public_client(http: aiohttp.ClientSession, hydra_provider: HydraProvider) -> Any:
    client = {
        "client_id": f"direct-{uuid.uuid4()}",
        "client_name": "direct test",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "openid offline_access",
        "token_endpoint_auth_method": "none",
    }
    async with http.post(f"{hydra_provider.admin_url}/admin/clients", json=client) as response:
        created = await json_of(response, 201)
    yield created
    async with http.delete(f"{hydra_provider.admin_url}/admin/clients/{created['client_id']}") as response:
        await json_of(response, 204)


def hydra_authorize_url(provider: HydraProvider, client_id: str, challenge: str | None, state: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid offline_access",
        "state": state,
    }
    if challenge:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    # The issuer is the (absent) gateway's origin; Hydra serves the same paths on its own listener.
    return f"{provider.public_url}/oauth2/auth?{urlencode(params)}"


async def hydra_tokens(http: aiohttp.ClientSession, provider: HydraProvider, form: dict[str, str]) -> Any:
    async with http.post(f"{provider.public_url}/oauth2/token", data=form) as response:
        return await json_of(response, 200)


async def test_hydra_discovery_uses_the_gateway_origin_as_issuer(
    http: aiohttp.ClientSession, hydra_provider: HydraProvider
) -> None:
    async with http.get(f"{hydra_provider.public_url}/.well-known/openid-configuration") as response:
        doc = await json_of(response, 200)
    assert doc["issuer"] == hydra_provider.issuer == f"http://127.0.0.1:{hydra_provider.gateway_port}"
    assert doc["token_endpoint"] == f"{hydra_provider.issuer}/oauth2/token"
    assert "S256" in doc["code_challenge_methods_supported"]


async def test_hydra_code_flow_with_pkce_and_refresh(
    http: aiohttp.ClientSession, hydra_provider: HydraProvider, hydra_public_client: Any
) -> None:
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    final = await hydra_accept_login_and_consent(
        http,
        hydra_authorize_url(hydra_provider, hydra_public_client["client_id"], challenge, state),
        admin_url=hydra_provider.admin_url,
        url_map={hydra_provider.issuer: hydra_provider.public_url},
    )
    assert final.startswith(REDIRECT_URI + "?")
    params = query_of(final)
    assert params["state"] == state
    tokens = await hydra_tokens(
        http,
        hydra_provider,
        {
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": hydra_public_client["client_id"],
            "code_verifier": verifier,
        },
    )
    assert tokens["token_type"].lower() == "bearer"
    assert {"access_token", "refresh_token", "id_token"} <= tokens.keys()

    refreshed = await hydra_tokens(
        http,
        hydra_provider,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": hydra_public_client["client_id"],
        },
    )
    assert refreshed["access_token"] != tokens["access_token"]
    assert refreshed["refresh_token"] != tokens["refresh_token"], "refresh tokens rotate"

    async with http.post(
        f"{hydra_provider.admin_url}/admin/oauth2/introspect", data={"token": refreshed["access_token"]}
    ) as response:
        introspection = await json_of(response, 200)
    assert introspection["active"] is True
    assert introspection["sub"] == hydra_provider.subject


async def test_hydra_enforces_pkce_for_public_clients(
    http: aiohttp.ClientSession, hydra_provider: HydraProvider, hydra_public_client: Any
) -> None:
    # Hydra checks PKCE when the flow completes, after login and consent.
    final = await hydra_accept_login_and_consent(
        http,
        hydra_authorize_url(hydra_provider, hydra_public_client["client_id"], None, secrets.token_urlsafe(16)),
        admin_url=hydra_provider.admin_url,
        url_map={hydra_provider.issuer: hydra_provider.public_url},
    )
    assert final.startswith(REDIRECT_URI + "?")
    assert query_of(final)["error"] == "invalid_request"
    assert "code" not in query_of(final)


async def test_dev_login_app_signs_in_through_its_pages(
    http: aiohttp.ClientSession, hydra_provider: HydraProvider, hydra_public_client: Any
) -> None:
    """The browser path of the local stack: Hydra -> dev login page -> consent page -> client redirect."""
    _, challenge = pkce_pair()
    url = hydra_authorize_url(hydra_provider, hydra_public_client["client_id"], challenge, secrets.token_urlsafe(16))
    issuer_to_hydra = {hydra_provider.issuer: hydra_provider.public_url}

    async def follow(url: str) -> str:
        for prefix, target in issuer_to_hydra.items():
            url = url.replace(prefix, target, 1) if url.startswith(prefix) else url
        async with http.get(url, allow_redirects=False) as response:
            assert response.status in {302, 303}, await response.text()
            return response.headers["Location"]

    login_page = await follow(url)
    assert login_page.startswith(f"{hydra_provider.login_url}/login?login_challenge=")
    async with http.get(login_page) as response:
        page = await response.text()
    assert response.status == 200
    assert "DEVELOPMENT ONLY" in page
    assert f"Sign in as {hydra_provider.subject}" in page
    async with http.post(
        f"{hydra_provider.login_url}/login",
        data={"login_challenge": query_of(login_page)["login_challenge"], "action": "accept"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        after_login = response.headers["Location"]

    consent_page = await follow(after_login)
    assert consent_page.startswith(f"{hydra_provider.login_url}/consent?consent_challenge=")
    async with http.get(consent_page) as response:
        page = await response.text()
    assert "offline_access" in page
    async with http.post(
        f"{hydra_provider.login_url}/consent",
        data={"consent_challenge": query_of(consent_page)["consent_challenge"], "action": "accept"},
        allow_redirects=False,
    ) as response:
        assert response.status == 303
        after_consent = response.headers["Location"]

    final = await follow(after_consent)
    assert final.startswith(REDIRECT_URI)
    assert "code" in query_of(final)


# --- Keycloak ------------------------------------------------------------------------------------------


async def test_keycloak_service_account_manages_clients_and_nothing_else(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider
) -> None:
    """``realm-management/manage-clients`` alone covers what the gateway needs (and no more)."""
    headers = await keycloak_admin_headers(http, keycloak_provider)
    base = keycloak_provider.admin_realm_url
    client_id = f"probe-{uuid.uuid4()}"
    async with http.post(
        f"{base}/clients",
        headers=headers,
        json={"clientId": client_id, "publicClient": True, "redirectUris": [REDIRECT_URI]},
    ) as response:
        await json_of(response, 201)
        uuid_ = response.headers["Location"].rsplit("/", 1)[-1]
    async with http.get(f"{base}/clients", headers=headers, params={"clientId": client_id}) as response:
        found = await json_of(response, 200)
    assert [c["id"] for c in found] == [uuid_]
    async with http.put(f"{base}/clients/{uuid_}", headers=headers, json={"name": "renamed"}) as response:
        await json_of(response, 204)
    async with http.get(f"{base}/clients/{uuid_}", headers=headers) as response:
        assert (await json_of(response, 200))["name"] == "renamed"

    async with http.get(f"{base}/client-scopes", headers=headers) as response:
        scopes = {s["name"]: s for s in await json_of(response, 200)}
    assert scopes["mcp"]["protocol"] == "openid-connect"
    assert scopes["mcp"]["attributes"]["include.in.token.scope"] == "true"
    assert {"basic", "profile", "email", "offline_access"} <= scopes.keys()
    async with http.get(f"{base}/default-default-client-scopes", headers=headers) as response:
        assert "basic" in {s["name"] for s in await json_of(response, 200)}
    async with http.get(f"{base}/default-optional-client-scopes", headers=headers) as response:
        assert "mcp" in {s["name"] for s in await json_of(response, 200)}
    async with http.put(
        f"{base}/clients/{uuid_}/optional-client-scopes/{scopes['mcp']['id']}", headers=headers
    ) as response:
        await json_of(response, 204)

    async with http.delete(f"{base}/clients/{uuid_}", headers=headers) as response:
        await json_of(response, 204)
    async with http.get(f"{base}/clients/{uuid_}", headers=headers) as response:
        assert response.status == 404

    # Least privilege: no users, roles or realm settings, and no other realm.
    for path in ("users", "roles", "groups"):
        async with http.get(f"{base}/{path}", headers=headers) as response:
            assert response.status == 403, path
    async with http.put(base, headers=headers, json={"displayName": "changed"}) as response:
        assert response.status == 403
    async with http.get(f"{keycloak_provider.base_url}/admin/realms/master/clients", headers=headers) as response:
        assert response.status == 403


async def test_keycloak_realm_has_the_unmanaged_legacy_client(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider
) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": keycloak_provider.legacy_client_id,
        "client_secret": keycloak_provider.legacy_client_secret,
    }
    async with http.post(keycloak_provider.token_endpoint, data=form) as response:
        # Tests use this grant to show the client still works, unchanged, after the gateway ran.
        assert "access_token" in await json_of(response, 200)
    headers = await keycloak_admin_headers(http, keycloak_provider)
    async with http.get(
        f"{keycloak_provider.admin_realm_url}/clients",
        headers=headers,
        params={"clientId": keycloak_provider.legacy_client_id},
    ) as response:
        (legacy,) = await json_of(response, 200)
    assert legacy["publicClient"] is False
    assert legacy["serviceAccountsEnabled"] is True
    # Its service account holds no admin role.
    async with http.post(keycloak_provider.token_endpoint, data=form) as response:
        token = (await json_of(response, 200))["access_token"]
    async with http.get(
        f"{keycloak_provider.admin_realm_url}/clients", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 403


async def test_keycloak_code_flow_with_pkce_and_refresh(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider
) -> None:
    headers = await keycloak_admin_headers(http, keycloak_provider)
    base = keycloak_provider.admin_realm_url
    client_id = f"direct-{uuid.uuid4()}"
    async with http.post(
        f"{base}/clients",
        headers=headers,
        json={
            "clientId": client_id,
            "publicClient": True,
            "standardFlowEnabled": True,
            "directAccessGrantsEnabled": False,
            "redirectUris": [REDIRECT_URI],
            "attributes": {"pkce.code.challenge.method": "S256"},
        },
    ) as response:
        await json_of(response, 201)
        uuid_ = response.headers["Location"].rsplit("/", 1)[-1]
    try:
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT_URI,
            "scope": "openid mcp",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        auth_url = f"{keycloak_provider.issuer}/protocol/openid-connect/auth?{urlencode(params)}"
        final = await keycloak_form_login(
            http, auth_url, username=keycloak_provider.username, password=keycloak_provider.password
        )
        assert final.startswith(REDIRECT_URI + "?")
        result = query_of(final)
        assert result["state"] == state
        form = {
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": client_id,
            "code_verifier": verifier,
        }
        async with http.post(keycloak_provider.token_endpoint, data=form) as response:
            tokens = await json_of(response, 200)
        assert {"access_token", "refresh_token", "id_token"} <= tokens.keys()
        assert "mcp" in tokens["scope"].split()

        form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
        async with http.post(keycloak_provider.token_endpoint, data=form) as response:
            refreshed = await json_of(response, 200)
        assert refreshed["access_token"] != tokens["access_token"]
        assert "mcp" in refreshed["scope"].split()

        # PKCE is required for this client: a flow without it is refused at the authorization endpoint.
        del params["code_challenge"], params["code_challenge_method"]
        no_pkce = f"{keycloak_provider.issuer}/protocol/openid-connect/auth?{urlencode(params)}"
        async with http.get(no_pkce, allow_redirects=False) as response:
            assert response.status == 302
            assert query_of(response.headers["Location"])["error"] == "invalid_request"
    finally:
        async with http.delete(f"{base}/clients/{uuid_}", headers=headers) as response:
            await json_of(response, 204)


async def test_keycloak_form_login_reports_bad_credentials(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider
) -> None:
    params = {
        "response_type": "code",
        "client_id": "account-console",
        "redirect_uri": f"{keycloak_provider.issuer}/account/",
        "scope": "openid",
        "code_challenge": pkce_pair()[1],
        "code_challenge_method": "S256",
    }
    auth_url = f"{keycloak_provider.issuer}/protocol/openid-connect/auth?{urlencode(params)}"
    with pytest.raises(HeadlessLoginError, match="login as 'alice' failed"):
        await keycloak_form_login(http, auth_url, username="alice", password="wrong")
