"""A whole deployment per provider: provider + gateway (session fixtures) + an MCP server naming the gateway.

Shared by the Python and TypeScript SDK tests; everything a client touches goes through the gateway's front
door (discovery, registration, authorize, token, JWKS), and the provider's admin API is used only to check
what the gateway created.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from mcp.server.auth.provider import TokenVerifier

from adapters.hydra.mapping import METADATA_KEY
from adapters.keycloak.mapping import MANAGED_ATTRIBUTE
from devstack.providers import HydraProvider, KeycloakProvider
from tests.integration.conftest import GatewayProcess, client_record
from tests.integration.mcp_e2e.headless import HeadlessUser, Login, hydra_login, keycloak_login
from tests.integration.mcp_e2e.server import McpServer, running_mcp_server
from tests.integration.mcp_e2e.verification import HydraIntrospection, KeycloakJwks

PROVIDERS = ["hydra", "keycloak"]


@dataclass(frozen=True)
class Deployment:
    """The gateway in front of one real provider, and how to start MCP servers that name it."""

    provider: str
    gateway: GatewayProcess
    login: Login
    username: str
    """The signed-in test user (Hydra: the token's ``sub``; Keycloak: its ``preferred_username``)."""
    hydra: HydraProvider | None = None
    keycloak: KeycloakProvider | None = None

    @property
    def issuer(self) -> str:
        return self.gateway.issuer

    def user(self) -> HeadlessUser:
        return HeadlessUser(self.login)

    def verifier(self, resource: str) -> TokenVerifier:
        """How an MCP server at ``resource`` checks this provider's tokens (see :mod:`.verification`)."""
        if self.hydra is not None:
            return HydraIntrospection(admin_url=self.hydra.admin_url, issuer=self.issuer, resource=resource)
        return KeycloakJwks(issuer=self.issuer, resource=resource)

    @contextmanager
    def mcp_server(self, *, scopes_supported: list[str] | None) -> Iterator[McpServer]:
        """An MCP server naming the gateway's issuer; ``scopes_supported`` are advertised and required."""
        with running_mcp_server(
            issuer=self.issuer, verifier=self.verifier, scopes_supported=scopes_supported
        ) as server:
            yield server

    async def provider_record(self, http: aiohttp.ClientSession, client_id: str) -> dict[str, Any]:
        """The provider's own record of ``client_id``, read with its admin API (not through the gateway)."""
        provider = self.hydra or self.keycloak
        assert provider is not None
        record = await client_record(provider, http, client_id)
        assert record is not None, f"{self.provider} has no client {client_id}"
        return record

    def is_managed(self, record: dict[str, Any]) -> bool:
        """Whether the provider's record carries the gateway's marker (it was created through the gateway)."""
        if self.hydra is not None:
            return METADATA_KEY in (record.get("metadata") or {})
        return (record.get("attributes") or {}).get(MANAGED_ATTRIBUTE) == "true"


def deployment(request: pytest.FixtureRequest, provider: str) -> Deployment:
    """The session's gateway and provider for ``provider`` (``hydra`` or ``keycloak``)."""
    if provider == "hydra":
        hydra: HydraProvider = request.getfixturevalue("hydra_provider")
        return Deployment(
            provider=provider,
            gateway=request.getfixturevalue("hydra_gateway"),
            login=hydra_login(hydra),
            username=hydra.subject,
            hydra=hydra,
        )
    keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
    return Deployment(
        provider=provider,
        gateway=request.getfixturevalue("keycloak_gateway"),
        login=keycloak_login(keycloak),
        username=keycloak.username,
        keycloak=keycloak,
    )
