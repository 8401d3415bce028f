"""Access control for registration in front of the real Keycloak and the real Hydra (RFC 7591 sections 3 and
2.3): an authenticated registration may get what an anonymous one may not, refused registrations create
nothing, and a software statement's claims are what the provider stores.

Each test runs a gateway app of its own with access settings (in-process, ``create_app`` + aiohttp's test
server): in front of Hydra its ``public_url`` is Hydra's issuer; in front of Keycloak it listens on a free port
(Keycloak follows X-Forwarded-*). Tokens are requested from the providers directly.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey

from devstack.process import free_port
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.access.tokens import hash_initial_access_token, mint_initial_access_token
from gateway.app import create_app
from gateway.settings import Settings
from tests.integration.conftest import client_count, client_record, hydra_options, keycloak_options

PROVIDERS = ["hydra", "keycloak"]
STATIC_TOKEN = "integration-static-initial-access-token"
TOKEN_KEY = ECKey.generate_key("P-256", parameters={"kid": "iat-1"})
STATEMENT_ISSUER = "https://statements.example.com"
STATEMENT_KEY = OKPKey.generate_key("Ed25519", parameters={"kid": "statements-1"})
NATIVE = {
    "client_name": "access-native",
    "redirect_uris": ["http://127.0.0.1:3000/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
}
SERVICE = {
    "client_name": "access-service",
    "grant_types": ["client_credentials"],
    "response_types": [],
    "token_endpoint_auth_method": "client_secret_basic",
}


def access_settings(mode: str) -> dict[str, Any]:
    return {
        "mode": mode,
        "initial_access_tokens": {
            "static_token_hashes": [hash_initial_access_token(STATIC_TOKEN)],
            "jwks": {"keys": [TOKEN_KEY.as_dict(private=False)]},
        },
        "software_statements": {
            "trusted_issuers": [{"issuer": STATEMENT_ISSUER, "jwks": {"keys": [STATEMENT_KEY.as_dict(private=False)]}}]
        },
    }


@dataclass(frozen=True)
class AccessGateway:
    provider: str
    issuer: str
    """The issuer the gateway serves (a signed initial access token's ``aud``)."""
    registration_endpoint: str
    token_endpoint: str
    """The provider's token endpoint, reached directly."""
    record: Callable[[str], Awaitable[dict[str, Any] | None]]
    """The provider's own record of a client, ``None`` when it has none."""
    count: Callable[[], Awaitable[int]]
    """How many clients the provider holds."""

    def signed_token(self, **claims: Any) -> str:
        return mint_initial_access_token(
            TOKEN_KEY, "ES256", audience=self.issuer, kid=TOKEN_KEY.kid, **{"expires_in": 300, **claims}
        )


GatewayFactory = Callable[[str, str], Awaitable[AccessGateway]]


@pytest.fixture
async def access_gateway(request: pytest.FixtureRequest, http: aiohttp.ClientSession) -> AsyncIterator[GatewayFactory]:
    """``await access_gateway(provider, mode)``: a gateway with that access mode, where ``client_credentials``
    is allowed for authenticated registrations only (policy ``client_credentials = "authenticated"``)."""
    servers: list[TestServer] = []

    async def factory(provider: str, mode: str) -> AccessGateway:
        common = {
            "access": access_settings(mode),
            "policy": {"client_credentials": "authenticated"},
            "limits": {"enabled": False},
            "log_format": "console",
        }
        if provider == "hydra":
            hydra: HydraProvider = request.getfixturevalue("hydra_provider")
            settings = Settings.model_validate({**hydra_options(hydra), **common})
            server = TestServer(create_app(settings), host="127.0.0.1")
            await server.start_server()
            servers.append(server)
            return AccessGateway(
                provider="hydra",
                issuer=hydra.issuer,
                registration_endpoint=str(server.make_url("/register")),
                token_endpoint=f"{hydra.public_url}/oauth2/token",
                record=functools.partial(client_record, hydra, http),
                count=functools.partial(client_count, hydra, http),
            )

        keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        settings = Settings.model_validate({**keycloak_options(keycloak, url), **common})
        server = TestServer(create_app(settings), host="127.0.0.1", port=port)
        await server.start_server()
        servers.append(server)
        issuer = f"{url}/realms/{keycloak.realm}"
        return AccessGateway(
            provider="keycloak",
            issuer=issuer,
            registration_endpoint=f"{issuer}/register",
            token_endpoint=keycloak.token_endpoint,
            record=functools.partial(client_record, keycloak, http),
            count=functools.partial(client_count, keycloak, http),
        )

    yield factory
    for server in servers:
        await server.close()


async def register(
    http: aiohttp.ClientSession, gateway: AccessGateway, body: dict[str, Any], token: str | None = None
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(gateway.registration_endpoint, json=body, headers=headers) as response:
        return response.status, await response.json(), response.headers


async def client_credentials_token(http: aiohttp.ClientSession, gateway: AccessGateway, client: dict[str, Any]) -> int:
    headers = {"Authorization": aiohttp.encode_basic_auth(client["client_id"], client["client_secret"])}
    async with http.post(
        gateway.token_endpoint, data={"grant_type": "client_credentials"}, headers=headers
    ) as response:
        body = await response.json()
        if response.status == 200:
            assert body["access_token"]
            assert body["token_type"].lower() == "bearer"
        return response.status


def software_statement(**claims: Any) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        payload = json.dumps({"iss": STATEMENT_ISSUER, **claims})
        return jws.serialize_compact({"alg": "EdDSA", "kid": "statements-1"}, payload, STATEMENT_KEY, ["EdDSA"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_client_credentials_only_with_an_initial_access_token(
    provider: str, access_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await access_gateway(provider, "open")
    before = await gateway.count()

    status, body, _ = await register(http, gateway, SERVICE)
    assert status == 400, body
    assert body["error"] == "invalid_client_metadata"
    assert "client_credentials" in body["error_description"]
    assert await gateway.count() == before

    token = gateway.signed_token(max_uses=1)
    status, client, _ = await register(http, gateway, SERVICE, token)
    assert status == 201, client
    assert client["grant_types"] == ["client_credentials"]
    record = await gateway.record(client["client_id"])
    assert record is not None
    if provider == "keycloak":
        assert record["serviceAccountsEnabled"] is True  # only an authenticated registration gets one
    else:
        assert record["grant_types"] == ["client_credentials"]
    assert await client_credentials_token(http, gateway, client) == 200

    # the single use is spent
    status, body, headers = await register(http, gateway, SERVICE, token)
    assert status == 401
    assert body == {"error": "invalid_token", "error_description": "the initial access token has been used up"}
    assert headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert await gateway.count() == before + 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_initial_access_token_mode_refuses_anonymous_and_creates_nothing(
    provider: str, access_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await access_gateway(provider, "initial_access_token")
    before = await gateway.count()
    for token in (None, "wrong-token", gateway.signed_token(expires_in=-300)):
        status, body, headers = await register(http, gateway, NATIVE, token)
        assert status == 401, body
        assert body["error"] == "invalid_token"
        assert headers["WWW-Authenticate"].startswith("Bearer")
    async with http.post(
        gateway.registration_endpoint, json=NATIVE, headers={"Authorization": "Basic Zm9vOmJhcg=="}
    ) as response:
        assert response.status == 401
    assert await gateway.count() == before

    status, client, _ = await register(http, gateway, NATIVE, STATIC_TOKEN)
    assert status == 201, client
    assert await gateway.record(client["client_id"]) is not None
    # a token does not by itself grant privileged metadata to a request the policy refuses
    status, body, _ = await register(http, gateway, {**NATIVE, "grant_types": ["implicit"]}, STATIC_TOKEN)
    assert status == 400
    assert await gateway.count() == before + 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_software_statement_claims_are_what_the_provider_stores(
    provider: str, access_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await access_gateway(provider, "software_statement")
    before = await gateway.count()
    status, body, _ = await register(http, gateway, NATIVE)
    assert (status, body["error"]) == (400, "invalid_software_statement")
    untrusted = software_statement(iss="https://untrusted.example")
    status, body, _ = await register(http, gateway, {**NATIVE, "software_statement": untrusted})
    assert (status, body["error"]) == (400, "unapproved_software_statement")
    assert await gateway.count() == before

    statement = software_statement(client_name="Attested Client", software_id="sw-4711", software_version="3.1")
    request = {**SERVICE, "client_name": "Self-chosen", "software_id": "self-chosen", "software_statement": statement}
    status, client, _ = await register(http, gateway, request)
    assert status == 201, client
    assert client["client_name"] == "Attested Client"
    assert client["software_id"] == "sw-4711"
    assert client["software_version"] == "3.1"
    assert "software_statement" not in client
    record = await gateway.record(client["client_id"])
    assert record is not None
    stored = json.dumps(record)
    assert "Attested Client" in stored
    assert "sw-4711" in stored
    assert "Self-chosen" not in stored
    assert statement.split(".")[2] not in stored  # the statement itself is not kept
    # a verified statement authenticates the registration: client_credentials works end to end
    assert await client_credentials_token(http, gateway, client) == 200
