"""A dictionary-backed provider adapter that follows the :class:`adapters.base.ProviderAdapter` contract.

It also holds a few *unmanaged* clients when asked to, so the "never touch what we did not create" rule can
be tested at the HTTP layer without a provider.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from adapters.base import (
    DEFAULT_DEPLOYMENT,
    AdoptionRefused,
    Capabilities,
    ClientConflict,
    ClientNotFound,
    ClientUsage,
    Issuer,
    ManagedClient,
    NewClient,
    ProviderMisconfigured,
    ProviderUnavailable,
    SettingDifference,
    UnmanagedClient,
    with_deployment,
)
from gateway.oauth.metadata import NONE, ClientMetadata

if TYPE_CHECKING:
    import aiohttp

    from gateway.settings import Settings


class MemoryAdapter:
    """Clients in a dict per issuer; ``unavailable = True`` simulates an unreachable provider, ``refusal`` one that
    refuses the gateway's configuration (what :meth:`check` raises)."""

    name = "memory"
    capabilities = Capabilities()

    def __init__(
        self,
        *,
        public_url: str,
        issuer_path: str = "",
        native_registration_paths: tuple[str, ...] = (),
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        self._deployment = deployment
        self._public_url = public_url.rstrip("/")
        self._issuer_path = issuer_path
        self._native_registration_paths = native_registration_paths
        self.clients: dict[str, dict[str, ManagedClient]] = {"default": {}}
        self.unmanaged: dict[str, set[str]] = {"default": set()}
        self.unavailable = False
        self.refusal: ProviderMisconfigured | None = None

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

    async def check(self) -> None:
        """The admin API check (:class:`adapters.base.AdminApiCheck`): ``refusal`` if set, else unavailable or fine."""
        if self.refusal is not None:
            raise self.refusal
        self._check()

    async def registrable_scopes(self, issuer: str) -> None:
        """No provider-side limit on scopes (RFC 8414 section 2 ``scopes_supported`` is served as upstream has it)."""
        return None

    def _check(self) -> None:
        if self.unavailable:
            raise ProviderUnavailable("memory provider marked unavailable", request_sent=False)

    def add_unmanaged(self, issuer: str, client_id: str) -> None:
        """Pretend the provider holds a client the gateway did not create."""
        self.unmanaged.setdefault(issuer, set()).add(client_id)

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        self._check()
        client = with_deployment(client, self._deployment)
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
        # As the real providers behave: the secret is kept unless a new one is given, and a public client has none.
        keeps_secret = client.metadata.token_endpoint_auth_method != NONE
        updated = replace(
            current,
            metadata=ClientMetadata.model_validate(client.metadata.registered()),
            client_secret=(client.client_secret or current.client_secret) if keeps_secret else None,
            client_secret_expires_at=client.client_secret_expires_at,
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

    # ------------------------------------------------------------------------- client hygiene (clients CLI)

    @property
    def candidates(self) -> dict[str, dict[str, UnmanagedClient]]:
        """Details of unmanaged clients by issuer (labels, privileges), for adoption tests."""
        store: dict[str, dict[str, UnmanagedClient]] = self.__dict__.setdefault("_candidates", {})
        return store

    @property
    def usages(self) -> dict[str, dict[str, ClientUsage]]:
        """What :meth:`usage` answers per issuer and client (default: created at ``client_id_issued_at``)."""
        store: dict[str, dict[str, ClientUsage]] = self.__dict__.setdefault("_usages", {})
        return store

    def add_unmanaged_client(self, issuer: str, client: UnmanagedClient) -> None:
        """Pretend the provider holds ``client``, which the gateway did not create."""
        self.add_unmanaged(issuer, client.client_id)
        self.candidates.setdefault(issuer, {})[client.client_id] = client

    async def usage(self, issuer: str, client_id: str) -> ClientUsage:
        client = await self.read_client(issuer, client_id)
        recorded = self.usages.get(issuer, {}).get(client_id)
        return recorded or ClientUsage(created_at=client.client_id_issued_at or None)

    async def list_unmanaged(self, issuer: str) -> AsyncIterator[UnmanagedClient]:
        self._check()
        details = self.candidates.get(issuer, {})
        for client_id in sorted(self.unmanaged.get(issuer, set())):
            yield details.get(client_id) or UnmanagedClient(client_id=client_id)

    async def adopt_client(
        self, issuer: str, client_id: str, gateway_data: Mapping[str, Any], *, conform: bool = True
    ) -> ManagedClient:
        """Adopts ``client_id``; with ``conform``, the candidate's differences are gone (recorded in
        :attr:`conformed`, as a provider would change the settings)."""
        self._check()
        if client_id in self.clients.get(issuer, {}):
            raise ClientConflict(f"{client_id} is managed already")
        if client_id not in self.unmanaged.get(issuer, set()):
            raise ClientNotFound(client_id)
        candidate = self.candidates.get(issuer, {}).get(client_id)
        if candidate is not None and candidate.protected:
            raise AdoptionRefused(f"{client_id} is {candidate.protected}")
        self.unmanaged[issuer].discard(client_id)
        self.candidates.get(issuer, {}).pop(client_id, None)
        name = candidate.client_name if candidate else None
        adopted = ManagedClient(
            client_id=client_id,
            metadata=ClientMetadata(client_name=name),
            client_id_issued_at=int(time.time()),
            gateway_data=dict(gateway_data),
        )
        self.clients.setdefault(issuer, {})[client_id] = adopted
        if conform and candidate is not None and candidate.differences:
            self.conformed.setdefault(issuer, {})[client_id] = candidate.differences
        return adopted

    @property
    def conformed(self) -> dict[str, dict[str, tuple[SettingDifference, ...]]]:
        """The settings each adoption changed, by issuer and client (for adoption tests)."""
        store: dict[str, dict[str, tuple[SettingDifference, ...]]] = self.__dict__.setdefault("_conformed", {})
        return store


def create_adapter(settings: Settings) -> MemoryAdapter:
    """Built-in factory (see :mod:`adapters.registry`)."""
    return MemoryAdapter(public_url=settings.provider_url, deployment=settings.deployment)
