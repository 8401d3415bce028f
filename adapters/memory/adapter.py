"""A dictionary-backed provider adapter that follows the :class:`adapters.base.ProviderAdapter` contract.

It also holds a few *unmanaged* clients when asked to, so the "never touch what we did not create" rule can
be tested at the HTTP layer without a provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING

from adapters.base import (
    Capabilities,
    ClientConflict,
    ClientNotFound,
    Issuer,
    ManagedClient,
    NewClient,
    ProviderUnavailable,
)
from gateway.rfc7591.models import GRANT_TYPES, TOKEN_ENDPOINT_AUTH_METHODS, ClientMetadata

if TYPE_CHECKING:
    import aiohttp

    from gateway.settings import Settings


class MemoryAdapter:
    """Clients in a dict per issuer; ``unavailable = True`` simulates an unreachable provider."""

    name = "memory"
    capabilities = Capabilities(
        token_endpoint_auth_methods=TOKEN_ENDPOINT_AUTH_METHODS,
        grant_types=GRANT_TYPES,
        loopback_any_port=True,
        per_client_pkce=True,
        stores_extra_metadata=True,
    )

    def __init__(
        self, *, public_url: str, issuer_path: str = "", native_registration_paths: tuple[str, ...] = ()
    ) -> None:
        self._public_url = public_url.rstrip("/")
        self._issuer_path = issuer_path
        self._native_registration_paths = native_registration_paths
        self.clients: dict[str, dict[str, ManagedClient]] = {"default": {}}
        self.unmanaged: dict[str, set[str]] = {"default": set()}
        self.unavailable = False

    def issuers(self) -> list[Issuer]:
        return [
            Issuer(
                key="default",
                path=self._issuer_path,
                metadata_url=f"{self._public_url}{self._issuer_path}/.well-known/openid-configuration",
                native_registration_paths=self._native_registration_paths,
            )
        ]

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        """Nothing to close."""

    def _check(self) -> None:
        if self.unavailable:
            raise ProviderUnavailable("memory provider marked unavailable")

    def add_unmanaged(self, issuer: str, client_id: str) -> None:
        """Pretend the provider holds a client the gateway did not create."""
        self.unmanaged.setdefault(issuer, set()).add(client_id)

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        self._check()
        store = self.clients.setdefault(issuer, {})
        if client.client_id in store or client.client_id in self.unmanaged.get(issuer, set()):
            raise ClientConflict(client.client_id)
        managed = ManagedClient(
            client_id=client.client_id,
            metadata=ClientMetadata.model_validate(client.metadata.registered()),
            client_id_issued_at=client.client_id_issued_at,
            client_secret=client.client_secret,
            client_secret_expires_at=client.client_secret_expires_at,
            gateway_data=dict(client.gateway_data),
        )
        store[client.client_id] = managed
        return managed

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        self._check()
        try:
            return self.clients.get(issuer, {})[client_id]
        except KeyError:
            raise ClientNotFound(client_id) from None

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        current = await self.read_client(issuer, client.client_id)
        updated = replace(
            current,
            metadata=client.metadata,
            client_secret=client.client_secret or current.client_secret,
            gateway_data=dict(client.gateway_data),
        )
        self.clients[issuer][client.client_id] = updated
        return updated

    async def delete_client(self, issuer: str, client_id: str) -> None:
        await self.read_client(issuer, client_id)
        del self.clients[issuer][client_id]

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        self._check()
        for client in list(self.clients.get(issuer, {}).values()):
            yield client


def create_adapter(settings: Settings) -> MemoryAdapter:
    """Built-in factory (see :mod:`adapters.registry`)."""
    return MemoryAdapter(public_url=settings.provider_url)
