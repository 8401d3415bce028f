"""Hydra admin REST adapter.

Transport: the app's shared :class:`aiohttp.ClientSession`, not ory-hydra-client's ``OAuth2Api``. That
package's transport is synchronous urllib3 (each call would block the event loop, or need a thread per
request), and its strict pydantic models reject valid clients (a JWK without ``alg``, ``kid`` and ``use``
fails validation) and inject defaults in ``to_dict()`` that would change what we register. The package
still serves as the schema: the unit tests check that every body :mod:`adapters.hydra.mapping` produces is
accepted by ``ory_hydra_client.models.OAuth2Client``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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
    UnmanagedClient,
    addressable_client_id,
    with_deployment,
)
from adapters.hydra.mapping import (
    adoption_patch,
    from_hydra,
    is_managed,
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


class HydraAdapter:
    """Creates and manages Hydra OAuth 2.0 clients through ``/admin/clients``."""

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

    async def registrable_scopes(self, issuer: str) -> None:
        """No provider-side limit: Hydra registers any scope token on a client (a deployment limits them with the
        policy's scope allow-list), so discovery keeps Hydra's ``scopes_supported`` (RFC 8414 section 2)."""
        return None

    # ------------------------------------------------------------------------------------- transport

    async def _call(
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
            and not (isinstance(payload, dict) and payload.get("client_id") == client_id and is_managed(payload))
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
        await self._get_raw(client.client_id)  # only managed clients
        body = to_hydra(client)
        status, payload = await self._call("PUT", self._client_path(client.client_id), json_body=body)
        if status != 200 or not isinstance(payload, dict):
            raise self._rejection(status, payload)
        return from_hydra(payload)

    async def delete_client(self, issuer: str, client_id: str) -> None:
        await self._get_raw(client_id)  # only managed clients
        status, payload = await self._call("DELETE", self._client_path(client_id))
        if status == 404:
            raise ClientNotFound(client_id)
        if status != 204:
            raise self._rejection(status, payload)

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        async for item in self._all_raw_clients():
            if is_managed(item):
                yield from_hydra(item)

    # ------------------------------------------------------------------------- client hygiene (clients CLI)

    async def usage(self, issuer: str, client_id: str) -> ClientUsage:
        """``created_at`` / ``updated_at`` of a managed client (Hydra cannot tell sessions per client)."""
        return usage_from_hydra(await self._get_raw(client_id))

    async def _all_raw_clients(self) -> AsyncIterator[dict[str, Any]]:
        """Every client in Hydra, managed or not, page by page (Ory keyset pagination)."""
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
            for item in payload or []:
                if isinstance(item, dict):
                    yield item
            # An empty page is the end: Hydra v2 links a rel="next" page even from an empty one.
            page_token = _next_page_token(link) if payload else None
            if not page_token:
                return

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
    """Hydra paginates with ``Link: <...?page_token=X>; rel="next"`` (Ory keyset pagination)."""
    for part in link_header.split(","):
        if 'rel="next"' in part and "page_token=" in part:
            token = part.split("page_token=", 1)[1]
            return token.split("&", 1)[0].split(">", 1)[0]
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
