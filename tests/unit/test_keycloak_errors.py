"""How the Keycloak adapter names what Keycloak answered (issue 8 items 10 and 11): a refused secret is not a
missing role, and "Realm does not exist" is a missing realm (503), never an unknown client (which became a 500)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.base import (
    AdapterError,
    ClientNotFound,
    CredentialsRefused,
    IssuerMissing,
    ProviderAuthError,
    ProviderUnavailable,
    RoleMissing,
)
from adapters.keycloak.adapter import KeycloakAdapter, realm_missing
from adapters.keycloak.admin import KeycloakAuthenticationError, KeycloakGetError, KeycloakPostError


def translate(exc: Exception) -> AdapterError:
    assert isinstance(exc, (KeycloakAuthenticationError, KeycloakGetError, KeycloakPostError))
    return KeycloakAdapter._translate(exc, "create client")


def test_a_refused_secret_is_credentials_refused_and_does_not_blame_a_role() -> None:
    error = translate(
        KeycloakAuthenticationError(
            error_message=b'{"error":"unauthorized_client","error_description":"Invalid client or Invalid client '
            b'credentials"}',
            response_code=401,
        )
    )
    assert isinstance(error, CredentialsRefused)
    assert isinstance(error, ProviderAuthError)  # registrations: 503, as before
    assert "manage-clients" not in str(error)
    assert "DCR_KEYCLOAK__CLIENT_SECRET" in str(error)


def test_a_forbidden_admin_call_is_a_missing_role() -> None:
    error = translate(KeycloakPostError(error_message=b'{"error":"HTTP 403 Forbidden"}', response_code=403))
    assert isinstance(error, RoleMissing)
    assert isinstance(error, ProviderAuthError)
    assert "realm-management/manage-clients" in str(error)


@pytest.mark.parametrize("body", [b'{"error":"Realm does not exist"}', b'{"error":"Realm not found."}'])
def test_a_missing_realm_is_issuer_missing_a_temporary_unavailability(body: bytes) -> None:
    error = translate(KeycloakPostError(error_message=body, response_code=404))
    assert isinstance(error, IssuerMissing)
    assert isinstance(error, ProviderUnavailable)
    assert not isinstance(error, ClientNotFound)
    assert realm_missing(body)


def test_a_missing_client_stays_client_not_found() -> None:
    error = translate(KeycloakGetError(error_message=b'{"error":"Could not find client"}', response_code=404))
    assert isinstance(error, ClientNotFound)


@pytest.mark.parametrize(
    ("realm_status", "realm_body", "expected"),
    [
        (404, b'{"error":"Realm does not exist"}', IssuerMissing),
        (200, b'{"realm":"mcp","public_key":"..."}', CredentialsRefused),
    ],
)
async def test_a_refused_token_is_credentials_refused_only_while_the_realm_still_answers(
    aiohttp_server: Any, realm_status: int, realm_body: bytes, expected: type[AdapterError]
) -> None:
    """A token request racing a realm's deletion is refused ``invalid_client`` (its clients go first): readiness
    must name the missing realm, not blame the secret (a CI run reported "credentials refused" for a deleted realm)."""

    async def token(request: web.Request) -> web.Response:
        return web.json_response(
            {"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"},
            status=401,
        )

    async def realm(request: web.Request) -> web.Response:
        return web.Response(body=realm_body, status=realm_status, content_type="application/json")

    app = web.Application()
    app.router.add_post("/realms/mcp/protocol/openid-connect/token", token)
    app.router.add_get("/realms/mcp", realm)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    adapter = KeycloakAdapter(
        server_url=base, public_url=base, realms=["mcp"], client_id="dcr-gateway", client_secret="s3cret-value"
    )
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        try:
            with pytest.raises(expected) as raised:
                await adapter.check()
        finally:
            await adapter.close()
    assert type(raised.value) is expected
    assert "s3cret-value" not in str(raised.value)
    assert "'mcp'" in str(raised.value)
