"""A whole deployment per provider: provider + gateway (session fixtures) + an MCP server naming the gateway.

Shared by the Python and TypeScript SDK tests; everything a client touches goes through the gateway's front
door (discovery, registration, authorize, token, JWKS), and the provider's admin API is used only to check
what the gateway created.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import pytest
from mcp.server.auth.provider import TokenVerifier

from adapters.base import DocumentClients
from adapters.hydra.adapter import HydraAdapter
from adapters.hydra.mapping import METADATA_KEY
from adapters.keycloak.mapping import MANAGED_ATTRIBUTE
from devstack.providers import HydraProvider, KeycloakProvider
from tests.integration.conftest import DocumentHost, GatewayProcess, McpResource, client_record
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
    resource: McpResource
    """Where MCP servers listen: the gateway's protected resource."""
    documents: DocumentHost
    """The Client ID Metadata Document host the gateway trusts."""
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
            issuer=self.issuer,
            verifier=self.verifier,
            scopes_supported=scopes_supported,
            binds_resource=True,
            port=self.resource.port,
        ) as server:
            yield server

    async def provider_record(self, http: aiohttp.ClientSession, client_id: str) -> dict[str, Any]:
        """The provider's own record of ``client_id``, read with its admin API (not through the gateway)."""
        provider = self.hydra or self.keycloak
        assert provider is not None
        record = await client_record(provider, http, client_id)
        assert record is not None, f"{self.provider} has no client {client_id}"
        return record

    def stored_client_id(self, document_url: str) -> str:
        """The id the provider holds a document client under: the URL on Keycloak, the Hydra adapter's derived id
        on Hydra (its admin API cannot address ids with ``/``; ``DocumentClients.stored_client_id``)."""
        if self.hydra is None:
            return document_url
        adapter = HydraAdapter(admin_url=self.hydra.admin_url, public_url=self.hydra.public_url)
        return cast(DocumentClients, adapter).stored_client_id(self.issuer, document_url)

    def requests(self, *, method: str, path_suffix: str) -> int:
        """How many ``method`` requests to a path ending in ``path_suffix`` the gateway has logged so far (its
        ``http.request`` lines; the log is JSON, one object a line)."""
        count = 0
        for line in self.gateway.log_path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(entry, dict)
                and entry.get("event") == "http.request"
                and entry.get("method") == method
                and str(entry.get("path", "")).endswith(path_suffix)
            ):
                count += 1
        return count

    def registrations(self) -> int:
        """RFC 7591 requests the gateway has received so far (``POST .../register``)."""
        return self.requests(method="POST", path_suffix="/register")

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
            resource=request.getfixturevalue("mcp_resource"),
            documents=request.getfixturevalue("cimd_host"),
            hydra=hydra,
        )
    keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
    return Deployment(
        provider=provider,
        gateway=request.getfixturevalue("keycloak_gateway"),
        login=keycloak_login(keycloak),
        username=keycloak.username,
        resource=request.getfixturevalue("mcp_resource"),
        documents=request.getfixturevalue("cimd_host"),
        keycloak=keycloak,
    )
