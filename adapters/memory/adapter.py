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
    ResourceBinding,
    SettingDifference,
    UnmanagedClient,
    UsagePage,
    with_deployment,
)
from adapters.bindings import (
    admitted_after,
    admitted_kept,
    derived_document_id,
    document_gateway_data,
    is_http_loopback_ip,
    merged_redirect_uris,
)
from gateway.oauth.metadata import NONE, ClientMetadata

if TYPE_CHECKING:
    import aiohttp

    from gateway.settings import Settings


class MemoryAdapter:
    """Clients in a dict per issuer; ``unavailable = True`` simulates an unreachable provider, ``refusal`` one that
    refuses the gateway's configuration (what :meth:`check` raises).

    It has the optional capabilities of :mod:`adapters.base` too, as a reference for them: document clients
    (:class:`~adapters.base.DocumentClients`, stored under the URL itself, or with ``derived_document_ids`` under
    a derived id as Hydra does), resource bindings (:class:`~adapters.base.ResourceIndicators`, an ``audience``
    list per client as on Hydra) and loopback admission (:class:`~adapters.base.LoopbackRedirects`, with Hydra's
    rule: any port only for loopback IP literals). What a provider would enforce is readable:
    :meth:`redirect_uris_of` and :attr:`audiences`."""

    name = "memory"
    capabilities = Capabilities()

    def __init__(
        self,
        *,
        public_url: str,
        issuer_path: str = "",
        native_registration_paths: tuple[str, ...] = (),
        deployment: str = DEFAULT_DEPLOYMENT,
        derived_document_ids: bool = False,
        oauth_paths: bool = False,
    ) -> None:
        self._deployment = deployment
        self._derived_document_ids = derived_document_ids
        self._oauth_paths = oauth_paths
        """Name authorization, token, PAR and revocation endpoints under the issuer's path (``/authorize``,
        ``/token``, ``/par``, ``/revoke``), so the front door checks them (the HTTP-level tests' fake upstream)."""
        self.document_urls: dict[str, dict[str, str]] = {"default": {}}
        """Stored id -> document URL of the document clients, per issuer (they live in :attr:`clients` too)."""
        self.admitted: dict[str, dict[str, list[str]]] = {"default": {}}
        """Redirect URIs admitted at run time per issuer and stored id, oldest first (RFC 8252 section 7.3)."""
        self.audiences: dict[str, dict[str, list[str]]] = {"default": {}}
        """Each client's audience allow-list (RFC 8707 resources bound to it), per issuer and stored id."""
        self._public_url = public_url.rstrip("/")
        self._issuer_path = issuer_path
        self._native_registration_paths = native_registration_paths
        self.clients: dict[str, dict[str, ManagedClient]] = {"default": {}}
        self.unmanaged: dict[str, set[str]] = {"default": set()}
        self.unavailable = False
        self.refusal: ProviderMisconfigured | None = None
        self.page_size = 100
        """Clients per page of :meth:`list_with_usage` (a provider's listing page)."""
        self.pages_read = 0
        """Listing pages read by :meth:`list_with_usage` and :meth:`count_managed`, as a provider's admin calls."""

    def issuers(self) -> list[Issuer]:
        return [
            Issuer(
                key="default",
                path=self._issuer_path,
                metadata_url=f"{self._public_url}{self._issuer_path}/.well-known/openid-configuration",
                native_registration_paths=self._native_registration_paths,
                authorization_path=f"{self._issuer_path}/authorize" if self._oauth_paths else None,
                token_path=f"{self._issuer_path}/token" if self._oauth_paths else None,
                par_path=f"{self._issuer_path}/par" if self._oauth_paths else None,
                revocation_path=f"{self._issuer_path}/revoke" if self._oauth_paths else None,
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
        """A DCR client only: document clients are not reachable here (RFC 7592 is for registered clients)."""
        self._check()
        if client_id in self.document_urls.get(issuer, {}):
            raise ClientNotFound(client_id)
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
        self._keep_admitted(issuer, client.client_id, updated)
        return updated

    async def delete_client(self, issuer: str, client_id: str) -> None:
        await self.read_client(issuer, client_id)
        self._forget(issuer, client_id)

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        """Managed DCR clients; never document clients (:meth:`list_document_clients`: ``dcr-gateway clients``
        leaves them out, they are made again from their document on the next authorization)."""
        self._check()
        documents = self.document_urls.get(issuer, {})
        for stored_id, client in list(self.clients.get(issuer, {}).items()):
            if stored_id not in documents:
                yield client

    async def list_document_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        """The document clients (``client_id`` the URL)."""
        self._check()
        documents = self.document_urls.get(issuer, {})
        for stored_id, client in list(self.clients.get(issuer, {}).items()):
            if stored_id in documents:
                yield client

    def _forget(self, issuer: str, stored_id: str) -> None:
        self.clients[issuer].pop(stored_id, None)
        self.document_urls.get(issuer, {}).pop(stored_id, None)
        self.admitted.get(issuer, {}).pop(stored_id, None)
        self.audiences.get(issuer, {}).pop(stored_id, None)

    def _keep_admitted(self, issuer: str, stored_id: str, client: ManagedClient) -> None:
        """After a full replacement: admitted URIs stay while a registered URI still differs from them only in
        the port (:func:`~adapters.bindings.admitted_kept`)."""
        store = self.admitted.setdefault(issuer, {})
        store[stored_id] = admitted_kept(store.get(stored_id, []), client.metadata.redirect_uris or [])

    # ------------------------------------------------------------------- client ID metadata documents (CIMD)

    def stored_client_id(self, issuer: str, url: str) -> str:
        """The URL itself, or with ``derived_document_ids`` :func:`~adapters.bindings.derived_document_id`."""
        return derived_document_id(url) if self._derived_document_ids else url

    async def read_document_client(self, issuer: str, url: str) -> ManagedClient | None:
        self._check()
        stored_id = self.stored_client_id(issuer, url)
        if self.document_urls.get(issuer, {}).get(stored_id) != url:
            return None
        return self.clients[issuer][stored_id]

    async def put_document_client(self, issuer: str, client: NewClient) -> ManagedClient:
        """Create or replace in full (rule 5); :class:`ClientConflict` when the id is held by an unmanaged client
        or by a client that is not this document's."""
        self._check()
        url = client.client_id
        stored_id = self.stored_client_id(issuer, url)
        store = self.clients.setdefault(issuer, {})
        documents = self.document_urls.setdefault(issuer, {})
        if stored_id in self.unmanaged.get(issuer, set()) or (stored_id in store and documents.get(stored_id) != url):
            raise ClientConflict(f"{stored_id} is held by another client")
        client = with_deployment(client, self._deployment)
        managed = ManagedClient(
            client_id=url,
            metadata=ClientMetadata.model_validate(client.metadata.registered()),
            client_id_issued_at=client.client_id_issued_at,
            client_secret=None,
            client_secret_expires_at=0,
            gateway_data=document_gateway_data(client),
        )
        store[stored_id] = managed
        documents[stored_id] = url
        self._keep_admitted(issuer, stored_id, managed)
        return managed

    async def delete_document_client(self, issuer: str, url: str) -> None:
        if await self.read_document_client(issuer, url) is None:
            raise ClientNotFound(url)
        self._forget(issuer, self.stored_client_id(issuer, url))

    # ------------------------------------------------------------------- RFC 8707 resource indicators

    async def bind_resource(self, issuer: str, client_id: str, resource: str) -> ResourceBinding:
        """``resource`` joins the managed client's audience list (as on Hydra); an unmanaged client is left as it
        is; :class:`ClientNotFound` when there is no such client."""
        self._check()
        if client_id in self.clients.get(issuer, {}):
            audience = self.audiences.setdefault(issuer, {}).setdefault(client_id, [])
            if resource not in audience:
                audience.append(resource)
        elif client_id not in self.unmanaged.get(issuer, set()):
            raise ClientNotFound(client_id)
        return ResourceBinding(audience=resource)

    # ------------------------------------------------------------------- RFC 8252 section 7.3 loopback redirects

    def admits_any_port(self, redirect_uri: str) -> bool:
        """As Hydra: any port only for ``http`` loopback IP literals."""
        return is_http_loopback_ip(redirect_uri)

    def redirect_uris_of(self, issuer: str, stored_id: str) -> list[str]:
        """The redirect URIs the provider would accept for the client: registered, then admitted."""
        client = self.clients.get(issuer, {}).get(stored_id)
        if client is None:
            return []
        return merged_redirect_uris(
            client.metadata.redirect_uris or [], self.admitted.get(issuer, {}).get(stored_id, [])
        )

    async def admit_redirect_uri(self, issuer: str, client_id: str, redirect_uri: str) -> None:
        self._check()
        if client_id not in self.clients.get(issuer, {}):
            raise ClientNotFound(client_id)
        if redirect_uri in self.redirect_uris_of(issuer, client_id):
            return
        store = self.admitted.setdefault(issuer, {})
        store[client_id] = admitted_after(store.get(client_id, []), redirect_uri)

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
        return self._usage_of(issuer, await self.read_client(issuer, client_id))

    async def list_with_usage(self, issuer: str) -> AsyncIterator[UsagePage]:
        """:class:`~adapters.base.UsageListing`: the DCR clients :attr:`page_size` at a time, each page read (and
        counted in :attr:`pages_read`) only when the previous one has been consumed, with the usage :meth:`usage`
        would answer."""
        documents = self.document_urls.get(issuer, {})
        first = 0
        while True:
            self._check()
            self.pages_read += 1
            window = list(self.clients.get(issuer, {}).items())[first : first + self.page_size]
            page = [(client, self._usage_of(issuer, client)) for stored, client in window if stored not in documents]
            if page:
                yield page
            if len(window) < self.page_size:
                return
            first += self.page_size

    async def count_managed(self, issuer: str) -> int:
        """:class:`~adapters.base.ClientCount`: DCR and document clients, one pass of :attr:`page_size` pages."""
        self._check()
        count = len(self.clients.get(issuer, {}))
        self.pages_read += count // self.page_size + 1
        return count

    def _usage_of(self, issuer: str, client: ManagedClient) -> ClientUsage:
        recorded = self.usages.get(issuer, {}).get(client.client_id)
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
