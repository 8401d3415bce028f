"""Hydra admin REST adapter.

Transport: the app's shared :class:`aiohttp.ClientSession`, not ory-hydra-client's ``OAuth2Api``. That
package's transport is synchronous urllib3 (each call would block the event loop, or need a thread per
request), and its strict pydantic models reject valid clients (a JWK without ``alg``, ``kid`` and ``use``
fails validation) and inject defaults in ``to_dict()`` that would change what we register. The package
still serves as the schema: the unit tests check that every body :mod:`adapters.hydra.mapping` produces is
accepted by ``ory_hydra_client.models.OAuth2Client``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import aiohttp
import structlog
from yarl import URL

from adapters.base import (
    DEFAULT_DEPLOYMENT,
    AdapterError,
    Capabilities,
    ClientConflict,
    ClientNotFound,
    ClientUsage,
    CredentialsRefused,
    Issuer,
    ManagedClient,
    NewClient,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    ProviderVersion,
    ResourceBinding,
    UnmanagedClient,
    UsagePage,
    addressable_client_id,
    version_tuple,
    with_deployment,
)
from adapters.bindings import (
    BoundedCache,
    admitted_after,
    derived_document_id,
    document_url_syntax,
    is_http_loopback_ip,
)
from adapters.hydra.mapping import (
    ADMITTED,
    METADATA_KEY,
    admitted_of,
    adoption_patch,
    document_url_of,
    from_hydra,
    is_managed,
    replacing,
    to_hydra,
    unmanaged_from_hydra,
    usage_from_hydra,
)
from adapters.hydra.settings import HydraSettings
from adapters.settings import adapter_settings
from gateway.oauth.lengths import LengthUnit, StoredLength

if TYPE_CHECKING:
    from gateway.settings import Settings

log = structlog.get_logger(__name__)

DEFAULT_ISSUER = "default"
PAGE_SIZE = 500
"""Clients per page of ``GET /admin/clients`` (Ory keyset pagination)."""
_TRANSIENT = re.compile(r"unable to serialize access|concurrent update|database is locked", re.IGNORECASE)
TRANSIENT_ATTEMPTS = 4


def _is_transient(payload: Any) -> bool:
    """Hydra's answer names a storage serialization conflict (SQLite, PostgreSQL, CockroachDB)."""
    if not isinstance(payload, dict):
        return False
    return _TRANSIENT.search(f"{payload.get('error')} {payload.get('error_description')}") is not None


_TEXT_COLUMN = StoredLength(65535, LengthUnit.UTF8, "hydra_client TEXT column (MySQL: 65,535 bytes)")
STORED_LENGTHS = {
    name: _TEXT_COLUMN for name in ("client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri")
}
"""Hydra keeps these in ``TEXT`` columns of ``hydra_client``: no limit on PostgreSQL, CockroachDB and SQLite,
65,535 bytes on MySQL (the strictest database it supports); list fields are JSON columns. Hydra validates no
lengths itself. The registration policy's own limits (2,000 and 500 characters, at most 4 bytes each) stay far
below, so these entries only guard a policy raised that far."""

_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
"""aiohttp failures before a request went out: no connection could be opened (refused, DNS, TLS, connect
timeout). A reused connection that fails later (``ServerDisconnectedError``) may have carried the request."""


PUT_ATTEMPTS = 4
"""Tries of a document client's create-or-replace when another writer gets in between (409, storage conflict)."""


class HydraAdapter:
    """Creates and manages Hydra OAuth 2.0 clients through ``/admin/clients``.

    Also the optional capabilities of MCP 2026-07-28 (:mod:`adapters.base`): document clients stored under a
    derived id (:meth:`stored_client_id`), RFC 8707 resources as entries of a client's ``audience`` list, and
    ``localhost`` loopback redirect URIs admitted with the port in use (Hydra ignores the port only for loopback
    IP literals). What is already prepared is cached per instance (:class:`~adapters.bindings.BoundedCache`).
    """

    name = "hydra"
    capabilities = Capabilities(
        stored_lengths=STORED_LENGTHS,
    )

    def __init__(
        self,
        *,
        admin_url: str,
        public_url: str,
        issuer_path: str = "",
        admin_headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        self._deployment = deployment
        self._session: aiohttp.ClientSession | None = None
        self._admin_url = admin_url.rstrip("/")
        self._public_url = public_url.rstrip("/")
        self._issuer_path = issuer_path.rstrip("/")
        self._headers = {"Accept": "application/json", **(admin_headers or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._prepared: BoundedCache[tuple[str, str, str], bool] = BoundedCache()
        """(kind, stored id, resource or redirect URI) already in the client's record: no admin call needed."""
        self._client_locks: dict[str, asyncio.Lock] = {}
        self._detected: ProviderVersion | None = None

    def issuers(self) -> list[Issuer]:
        return [
            Issuer(
                key=DEFAULT_ISSUER,
                path=self._issuer_path,
                metadata_url=f"{self._public_url}{self._issuer_path}/.well-known/openid-configuration",
                native_registration_paths=(f"{self._issuer_path}/oauth2/register",),
                # Hydra's public listener, without /health, /version and /metrics: OAuth 2.0 and OpenID
                # Connect endpoints, the device flow, RP-initiated logout, the fallback pages, and JWKS
                public_paths=tuple(
                    f"{self._issuer_path}{path}"
                    for path in (
                        "/oauth2/auth",
                        "/oauth2/token",
                        "/oauth2/revoke",
                        "/oauth2/sessions/logout",
                        "/oauth2/device/",
                        "/oauth2/fallbacks/",
                        "/userinfo",
                        "/.well-known/jwks.json",
                        "/credentials",
                    )
                ),
                authorization_path=f"{self._issuer_path}/oauth2/auth",
                token_path=f"{self._issuer_path}/oauth2/token",
                revocation_path=f"{self._issuer_path}/oauth2/revoke",
            )
        ]

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Keep the app's session: the admin API is unauthenticated, there is nothing else to open."""
        self._session = session

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("HydraAdapter.start() was not called")
        return self._session

    async def close(self) -> None:
        """The session belongs to the app."""

    async def check(self) -> None:
        """``GET /admin/clients?page_size=1`` with the configured headers, as registrations will call it: a 401/403
        (an authenticating proxy refusing ``admin_headers``) is :class:`CredentialsRefused`, an answer that is not
        Hydra's admin API (e.g. its public port, 404) :class:`ProviderMisconfigured`; unreachable, timing out or
        5xx :class:`ProviderUnavailable`. Nothing is changed."""
        try:
            async with self.session.get(
                f"{self._admin_url}/admin/clients",
                params={"page_size": "1"},
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                status = response.status
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderUnavailable(f"hydra admin check: {type(exc).__name__}: {exc}") from exc
        if status >= 500:
            raise ProviderUnavailable(f"hydra admin check: HTTP {status}")
        if status in (401, 403):
            raise CredentialsRefused(
                f"Hydra's admin API (or the proxy in front of it) refused the request (HTTP {status}); "
                "set DCR_HYDRA__ADMIN_HEADERS (TOML hydra.admin_headers)",
                setting="DCR_HYDRA__ADMIN_HEADERS",
            )
        if status != 200 or not isinstance(payload, list):
            raise ProviderMisconfigured(
                f"no Hydra admin API at the configured admin URL (HTTP {status} for GET /admin/clients); "
                "set DCR_HYDRA__ADMIN_URL (TOML hydra.admin_url) to Hydra's admin listener, e.g. http://hydra:4445",
                setting="DCR_HYDRA__ADMIN_URL",
            )

    async def detect_version(self) -> ProviderVersion:
        """``GET /version`` on the admin listener (``{"version": "v2.3.0"}``), once; then what it said.

        What differs between the Hydra releases this adapter supports (README, "Supported providers"):

        - ``rfc8414_discovery``: v25.4.0 and later serve ``/.well-known/oauth-authorization-server`` themselves
          (ory/hydra#3980), with Hydra's own ``registration_endpoint`` when its native registration is on. The
          gateway answers that path itself with the rewritten document, and the front door never forwards it
          (it is not in :meth:`issuers`' public paths), so clients see one document whatever the release.
        - ``admin_page_token``: every supported release pages ``GET /admin/clients`` with an opaque
          ``page_token`` from the ``Link`` header (v2.2.0 and later), which :meth:`list_with_usage` follows as
          given; nothing in the token is parsed.

        Fields a newer Hydra adds to the client JSON stay out of the RFC 7591 view (:func:`~adapters.hydra.mapping.
        from_hydra` reads the fields it knows), and a full replacement (``PUT``) sends what :func:`~adapters.hydra.
        mapping.to_hydra` maps plus the adapter state :func:`~adapters.hydra.mapping.replacing` carries over: a field
        the gateway does not know takes Hydra's default, as for a client created anew (RFC 7592 section 2.2)."""
        if self._detected is not None:
            return self._detected
        version: str | None = None
        source = "GET /version"
        try:
            async with self.session.get(
                f"{self._admin_url}/version", headers=self._headers, timeout=self._timeout, allow_redirects=False
            ) as response:
                payload = await response.json(content_type=None) if response.status == 200 else None
                if response.status != 200:
                    source = f"GET /version answered HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            payload, source = None, f"GET /version failed: {type(exc).__name__}"
        if isinstance(payload, dict) and isinstance(payload.get("version"), str):
            version = payload["version"][:40]
        parsed = version_tuple(version)
        detected = ProviderVersion(
            provider=self.name,
            version=version,
            features={
                "rfc8414_discovery": bool(parsed) and parsed >= (25, 4),
                "admin_page_token": not parsed or parsed >= (2, 2),
            },
            source=source,
        )
        self._detected = detected
        return detected

    async def registrable_scopes(self, issuer: str) -> None:
        """No provider-side limit: Hydra registers any scope token on a client (a deployment limits them with the
        policy's scope allow-list), so discovery keeps Hydra's ``scopes_supported`` (RFC 8414 section 2)."""
        return None

    # ------------------------------------------------------------------------------------- transport

    async def _call(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """One admin request, tried again (up to :data:`TRANSIENT_ATTEMPTS` times) when Hydra answers that its
        storage refused the transaction for a concurrent one (a 400 naming a serialization failure: the
        transaction was rolled back, so trying again is safe for every method)."""
        attempt = 1
        while True:
            status, payload = await self._call_once(method, path, json_body=json_body, params=params)
            if status != 400 or attempt >= TRANSIENT_ATTEMPTS or not _is_transient(payload):
                return status, payload
            await asyncio.sleep(0.05 * attempt)
            attempt += 1

    async def _call_once(
        self, method: str, path: str, *, json_body: Any = None, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """One admin request. ``path`` is sent exactly as given (already percent-encoded: yarl would otherwise
        decode ``%2F`` or resolve ``..``), and a redirect is never followed: Hydra redirects cleaned paths, and
        following one would send the admin headers to wherever it points."""
        url = URL(f"{self._admin_url}{path}", encoded=True)
        try:
            async with self.session.request(
                method,
                url,
                json=json_body,
                params=params,
                headers=self._headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                if 300 <= response.status < 400:
                    raise ProviderUnavailable(f"hydra admin {method}: unexpected redirect (HTTP {response.status})")
                payload: Any = None
                if response.status != 204:
                    try:
                        payload = await response.json(content_type=None)
                    except ValueError:
                        payload = None
                if response.status >= 500:
                    raise ProviderUnavailable(f"hydra admin {method} {path}: HTTP {response.status}")
                return response.status, payload
        except _NOT_SENT as exc:
            raise ProviderUnavailable(
                f"hydra admin {method} {path}: {type(exc).__name__}: {exc}", request_sent=False
            ) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderUnavailable(f"hydra admin {method} {path}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _client_path(client_id: str) -> str:
        """``/admin/clients/{id}``, the id as one encoded path segment; an id no client can have
        (:func:`~adapters.base.addressable_client_id`) is :class:`ClientNotFound` without a request."""
        if not addressable_client_id(client_id):
            raise ClientNotFound("no client can have this client_id")
        return f"/admin/clients/{quote(client_id, safe='')}"

    @staticmethod
    def _rejection(status: int, payload: Any) -> AdapterError:
        error = payload.get("error") if isinstance(payload, dict) else None
        description = payload.get("error_description") if isinstance(payload, dict) else None
        if status == 409:
            return ClientConflict("hydra: a client with this client_id exists")
        if _TRANSIENT.search(f"{error} {description}"):
            # Hydra answers some storage conflicts (e.g. SQLite serialization failures) with a 400.
            return ProviderUnavailable(f"hydra: transient storage conflict (HTTP {status})")
        field_name = "redirect_uris" if error == "invalid_redirect_uri" else None
        return ProviderRejected(f"hydra: {description or error or f'HTTP {status}'}", field_name=field_name)

    async def _get_raw(self, client_id: str) -> dict[str, Any]:
        status, payload = await self._call("GET", self._client_path(client_id))
        if status == 404 or (
            status == 200
            and not (
                isinstance(payload, dict)
                and payload.get("client_id") == client_id
                and is_managed(payload)
                and document_url_of(payload) is None  # document clients are not RFC 7592's
            )
        ):
            raise ClientNotFound(client_id)
        if status != 200 or not isinstance(payload, dict):
            raise self._rejection(status, payload)
        return payload

    # ------------------------------------------------------------------------------------ operations

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        client = with_deployment(client, self._deployment)
        status, payload = await self._call("POST", "/admin/clients", json_body=to_hydra(client))
        if status != 201 or not isinstance(payload, dict):
            raise self._rejection(status, payload)
        return from_hydra(payload)

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        return from_hydra(await self._get_raw(client_id))

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        current = await self._get_raw(client.client_id)  # only managed clients
        body = replacing(to_hydra(client), current)
        status, payload = await self._call("PUT", self._client_path(client.client_id), json_body=body)
        if status != 200 or not isinstance(payload, dict):
            raise self._rejection(status, payload)
        self._forget_prepared(client.client_id)
        return from_hydra(payload)

    async def delete_client(self, issuer: str, client_id: str) -> None:
        await self._get_raw(client_id)  # only managed clients
        status, payload = await self._call("DELETE", self._client_path(client_id))
        if status == 404:
            raise ClientNotFound(client_id)
        if status != 204:
            raise self._rejection(status, payload)
        self._forget_prepared(client_id)

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        """Managed DCR clients; never document clients (:meth:`list_document_clients`: ``dcr-gateway clients``
        leaves them out, they are made again from their document on the next authorization)."""
        async for item in self._all_raw_clients():
            if is_managed(item) and document_url_of(item) is None:
                yield from_hydra(item)

    # ------------------------------------------------------------------- client ID metadata documents (CIMD)

    async def list_document_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        async for item in self._all_raw_clients():
            if is_managed(item) and document_url_of(item) is not None:
                yield from_hydra(item)

    def stored_client_id(self, issuer: str, url: str) -> str:
        """:func:`~adapters.bindings.derived_document_id`: Hydra v2.3.0's admin API stores a ``client_id`` holding
        ``/`` but cannot address it (``GET /admin/clients/https:%2F%2F...`` is 404, its router decodes ``%2F``)."""
        return derived_document_id(url)

    async def _get_any(self, stored_id: str) -> dict[str, Any] | None:
        """The raw record of ``stored_id``, managed or not; ``None`` when Hydra has none."""
        status, payload = await self._call("GET", self._client_path(stored_id))
        if status == 404:
            return None
        if status != 200 or not isinstance(payload, dict):
            raise self._rejection(status, payload)
        return payload if payload.get("client_id") == stored_id else None

    async def _document_raw(self, url: str) -> dict[str, Any] | None:
        if not document_url_syntax(url):
            return None
        record = await self._get_any(self.stored_client_id(DEFAULT_ISSUER, url))
        return record if record is not None and document_url_of(record) == url else None

    async def read_document_client(self, issuer: str, url: str) -> ManagedClient | None:
        record = await self._document_raw(url)
        return None if record is None else from_hydra(record)

    async def put_document_client(self, issuer: str, client: NewClient) -> ManagedClient:
        """``POST`` a new client under the derived id, or ``PUT`` a full replacement of the managed one (its
        ``audience`` and admitted redirect URIs carry over: adapter state, not metadata). :class:`ClientConflict`
        when another client holds the id."""
        url = client.client_id
        if not document_url_syntax(url):
            raise ProviderRejected("hydra: not a client metadata document URL", field_name="client_id")
        client = with_deployment(client, self._deployment)
        stored_id = self.stored_client_id(issuer, url)
        body = to_hydra(client, stored_id=stored_id)
        async with self._lock(stored_id):
            for attempt in range(PUT_ATTEMPTS):
                current = await self._get_any(stored_id)
                if current is None:
                    status, payload = await self._call("POST", "/admin/clients", json_body=body)
                    if status == 201 and isinstance(payload, dict):
                        return from_hydra(payload)
                else:
                    if document_url_of(current) != url:
                        raise ClientConflict(f"hydra: client {stored_id!r} is not the document client of this URL")
                    path = self._client_path(stored_id)
                    status, payload = await self._call("PUT", path, json_body=replacing(body, current))
                    if status == 200 and isinstance(payload, dict):
                        self._forget_prepared(stored_id)
                        return from_hydra(payload)
                rejection = self._rejection(status, payload)
                # created meanwhile by another instance (409), or a storage conflict between two writers (Hydra's
                # transient 400): read again and replace what the other one wrote
                if not isinstance(rejection, (ClientConflict, ProviderUnavailable)) or status >= 500:
                    raise rejection
                await asyncio.sleep(0.05 * (attempt + 1))
        raise ProviderUnavailable(f"hydra: client {stored_id!r} keeps changing")

    async def delete_document_client(self, issuer: str, url: str) -> None:
        if await self._document_raw(url) is None:
            raise ClientNotFound(url)
        stored_id = self.stored_client_id(issuer, url)
        status, payload = await self._call("DELETE", self._client_path(stored_id))
        if status == 404:
            raise ClientNotFound(url)
        if status != 204:
            raise self._rejection(status, payload)
        self._forget_prepared(stored_id)

    # ------------------------------------------------------------------- RFC 8707 resource indicators

    def _lock(self, stored_id: str) -> asyncio.Lock:
        if len(self._client_locks) > 10_000:
            self._client_locks = {key: lock for key, lock in self._client_locks.items() if lock.locked()}
        return self._client_locks.setdefault(stored_id, asyncio.Lock())

    def _forget_prepared(self, stored_id: str) -> None:
        self._prepared.forget(lambda key: key[1] == stored_id)

    async def _patch(self, stored_id: str, patch: list[dict[str, Any]]) -> dict[str, Any]:
        """RFC 6902 JSON Patch of one client (Hydra keeps its hashed secret and every field the patch leaves out)."""
        status, payload = await self._call("PATCH", self._client_path(stored_id), json_body=patch)
        if status == 404:
            raise ClientNotFound(stored_id)
        if status != 200 or not isinstance(payload, dict):
            raise self._rejection(status, payload)
        return payload

    async def bind_resource(self, issuer: str, client_id: str, resource: str) -> ResourceBinding:
        """RFC 8707 on Hydra: ``resource`` joins the managed client's ``audience`` allow-list (one JSON Patch, once
        per instance and client: cached), and the request names it in Hydra's ``audience`` parameter; the consent
        app grants it (``grant_access_token_audience``), so the access token's ``aud`` carries it. An unmanaged
        client is left as it is."""
        binding = ResourceBinding(audience=resource)
        key = ("audience", client_id, resource)
        if self._prepared.get(key):
            return binding
        async with self._lock(client_id):
            if self._prepared.get(key):
                return binding
            current = await self._get_any(client_id)
            if current is None:
                raise ClientNotFound(client_id)
            if not is_managed(current):
                return binding
            audience = [a for a in current.get("audience") or [] if isinstance(a, str)]
            if resource not in audience:
                await self._patch(client_id, [{"op": "add", "path": "/audience", "value": [*audience, resource]}])
            self._prepared.put(key, True)
        return binding

    # ------------------------------------------------------------------- RFC 8252 section 7.3 loopback redirects

    def admits_any_port(self, redirect_uri: str) -> bool:
        """Hydra (fosite ``isMatchingAsLoopback``) ignores the port of an ``http`` redirect URI whose host is a
        loopback IP literal (``127.0.0.0/8``, ``[::1]``: ``net.ParseIP(host).IsLoopback()``), never for
        ``localhost``."""
        return is_http_loopback_ip(redirect_uri)

    async def admit_redirect_uri(self, issuer: str, client_id: str, redirect_uri: str) -> None:
        """Adds ``redirect_uri`` to the managed client's ``redirect_uris`` and to the admitted list in its gateway
        metadata (one JSON Patch), dropping the oldest admitted ones beyond
        :data:`~adapters.bindings.MAX_ADMITTED_REDIRECT_URIS`; registered URIs stay. Cached per instance.

        Calls for one client are serialised within an instance; Hydra's PATCH has no ``test`` operation, so two
        instances admitting different URIs to one client in the same instant can lose one addition (that
        authorization is refused by Hydra and works again once the cache entry expires)."""
        key = ("redirect", client_id, redirect_uri)
        if self._prepared.get(key):
            return
        async with self._lock(client_id):
            if self._prepared.get(key):
                return
            current = await self._get_any(client_id)
            if current is None or not is_managed(current):
                raise ClientNotFound(client_id)
            uris = [uri for uri in current.get("redirect_uris") or [] if isinstance(uri, str)]
            if redirect_uri not in uris:
                admitted = admitted_of(current)
                kept = admitted_after(admitted, redirect_uri)
                dropped = set(admitted) - set(kept)
                new_uris = [uri for uri in uris if uri not in dropped] + [redirect_uri]
                await self._patch(
                    client_id,
                    [
                        {"op": "add", "path": "/redirect_uris", "value": new_uris},
                        {"op": "add", "path": f"/metadata/{METADATA_KEY}/{ADMITTED}", "value": kept},
                    ],
                )
                stale = {("redirect", client_id, uri) for uri in dropped}
                self._prepared.forget(stale.__contains__)
            self._prepared.put(key, True)

    # ------------------------------------------------------------------------- client hygiene (clients CLI)

    async def usage(self, issuer: str, client_id: str) -> ClientUsage:
        """``created_at`` / ``updated_at`` of a managed client (Hydra cannot tell sessions per client)."""
        return usage_from_hydra(await self._get_raw(client_id))

    async def _all_raw_clients(self) -> AsyncIterator[dict[str, Any]]:
        """Every client in Hydra, managed or not (Ory keyset pagination)."""
        async for page in self._raw_pages():
            for item in page:
                yield item

    async def _raw_pages(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Every client in Hydra, managed or not, one admin call per page of :data:`PAGE_SIZE`."""
        page_token: str | None = None
        while True:
            params = {"page_size": str(PAGE_SIZE)}
            if page_token:
                params["page_token"] = page_token
            try:
                async with self.session.get(
                    f"{self._admin_url}/admin/clients",
                    params=params,
                    headers=self._headers,
                    timeout=self._timeout,
                    allow_redirects=False,  # admin calls never follow redirects (see _call)
                ) as response:
                    if response.status >= 300:
                        raise ProviderUnavailable(f"hydra admin GET /admin/clients: HTTP {response.status}")
                    payload = await response.json(content_type=None)
                    link = response.headers.get("Link", "")
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise ProviderUnavailable(f"hydra admin list: {type(exc).__name__}") from exc
            yield [item for item in payload or [] if isinstance(item, dict)]
            # An empty page is the end: Hydra v2 links a rel="next" page even from an empty one.
            page_token = _next_page_token(link) if payload else None
            if not page_token:
                return

    async def list_with_usage(self, issuer: str) -> AsyncIterator[UsagePage]:
        """:class:`~adapters.base.UsageListing`: the managed DCR clients of each listing page with the usage the
        page already carries (``created_at``, ``updated_at``; :func:`~adapters.hydra.mapping.usage_from_hydra`):
        ``ceil(all clients / 500)`` admin calls, none per client."""
        async for items in self._raw_pages():
            page: UsagePage = [
                (from_hydra(item), usage_from_hydra(item))
                for item in items
                if is_managed(item) and document_url_of(item) is None
            ]
            if page:
                yield page

    async def count_managed(self, issuer: str) -> int:
        """:class:`~adapters.base.ClientCount`: DCR and document clients in one pass over the listing, counted on
        the raw records (no mapping)."""
        count = 0
        async for items in self._raw_pages():
            count += sum(1 for item in items if is_managed(item))
        return count

    async def list_unmanaged(self, issuer: str) -> AsyncIterator[UnmanagedClient]:
        async for item in self._all_raw_clients():
            if not is_managed(item):
                yield unmanaged_from_hydra(item)

    async def adopt_client(
        self, issuer: str, client_id: str, gateway_data: Mapping[str, Any], *, conform: bool = True
    ) -> ManagedClient:
        """One JSON Patch adds the managed marker to ``metadata`` (and with ``conform`` turns ``skip_consent``
        off); configuration and secret stay as they are."""
        path = f"/admin/clients/{quote(client_id, safe='')}"
        status, payload = await self._call("GET", path)
        if status == 404:
            raise ClientNotFound(client_id)
        if status != 200 or not isinstance(payload, dict):
            raise self._rejection(status, payload)
        if is_managed(payload):
            raise ClientConflict(f"hydra: client {client_id!r} is managed already")
        patch = adoption_patch(payload, gateway_data, int(time.time()), conform=conform)
        status, payload = await self._call("PATCH", path, json_body=patch)
        if status != 200 or not isinstance(payload, dict):
            raise self._rejection(status, payload)
        return from_hydra(payload)


def _next_page_token(link_header: str) -> str | None:
    """Hydra paginates with ``Link: <...?page_token=X>; rel="next"`` (Ory keyset pagination). The token is opaque:
    taken as Hydra wrote it, only percent-decoded (it is sent again as a query parameter, which encodes it once more).
    v25.4 and later encrypt it (base64, so ``%2B``, ``%2F``, ``%3D`` in the link) and answer a token altered in
    any way with 400; v2.x tokens are plain."""
    for part in link_header.split(","):
        if 'rel="next"' in part and "page_token=" in part:
            token = part.split("page_token=", 1)[1]
            return unquote(token.split("&", 1)[0].split(">", 1)[0])
    return None


@adapter_settings(HydraSettings)
def create_adapter(settings: Settings) -> HydraAdapter:
    """Built-in factory (see :mod:`adapters.registry`)."""
    section = settings.section("hydra", HydraSettings)
    return HydraAdapter(
        admin_url=section.admin_url,
        public_url=settings.provider_url,
        issuer_path=section.issuer_path,
        admin_headers={k: v.get_secret_value() for k, v in section.admin_headers.items()},
        timeout=settings.provider_timeout,
        deployment=settings.deployment,
    )
