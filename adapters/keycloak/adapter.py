"""Keycloak adapter: the admin REST API over the app's aiohttp session (:mod:`adapters.keycloak.admin`), one
:class:`~adapters.keycloak.admin.KeycloakAdminClient` per realm.

Credentials: a confidential client in each served realm whose service account holds only
``realm-management`` ``manage-clients`` (plus ``view-clients`` to list the realm's client scopes).
:meth:`KeycloakAdapter.check` proves both at start and for ``/readyz``, and tells a refused secret, a missing
role and a missing realm apart.
``manage-clients`` reaches every client of the realm, the gateway's own included, so every read, update and
delete here checks :data:`~adapters.keycloak.mapping.MANAGED_ATTRIBUTE` first.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import aiohttp
import structlog

from adapters.base import (
    DEFAULT_DEPLOYMENT,
    AdapterError,
    AdoptionRefused,
    Capabilities,
    ClientConflict,
    ClientNotFound,
    ClientUsage,
    CredentialsRefused,
    Issuer,
    IssuerMissing,
    ManagedClient,
    NewClient,
    ProviderAuthError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
    ProviderVersion,
    ResourceBinding,
    RoleMissing,
    UnmanagedClient,
    UsagePage,
    addressable_client_id,
    with_deployment,
)
from adapters.bindings import (
    BoundedCache,
    admitted_after,
    document_url_syntax,
    resource_scope_name,
)
from adapters.keycloak.admin import (
    NOT_SENT,
    KeycloakAdminClient,
    KeycloakAuthenticationError,
    KeycloakConnectionError,
    KeycloakError,
    ServiceAccountToken,
)
from adapters.keycloak.mapping import (
    ADMITTED_ATTRIBUTE,
    AUDIENCE_MAPPER,
    MANAGED_ATTRIBUTE,
    REALM_MANAGEMENT_CLIENT,
    UNCHECKABLE_SERVICE_ACCOUNT,
    RealmScopes,
    admitted_of,
    adoption_attributes,
    audience_mapper,
    conforming_update,
    document_url_of,
    from_keycloak,
    is_managed,
    keycloak_protection,
    registered_view,
    registrable_scope_names,
    replacing,
    resource_scope_representation,
    service_account_protection,
    to_keycloak,
    unmanaged_from_keycloak,
    usage_from_keycloak,
)
from adapters.keycloak.settings import KeycloakSettings
from adapters.settings import adapter_settings
from gateway.oauth.lengths import LengthUnit, StoredLength

if TYPE_CHECKING:
    from gateway.settings import Settings

log = structlog.get_logger(__name__)

REALM_SCOPES_TTL = 60.0
PAGE_SIZE = 200
MANAGED_QUERY = f"{MANAGED_ATTRIBUTE}:true"
"""``GET /admin/realms/{realm}/clients?q=`` for the managed marker: Keycloak filters on a client attribute only
when it is listed in its ``spi-client--jpa--searchable-attributes`` option (``KC_SPI_CLIENT__JPA__SEARCHABLE_ATTRIBUTES
=dcr.gateway.managed``); a stock Keycloak answers 400 ``Attributes [...] not allowed for search``, and the adapter
then lists every client and filters itself."""
MARKER_PROBE = f"{MANAGED_ATTRIBUTE}:dcr-gateway-probe"
"""A ``q=`` no client matches (the marker's values are ``true``): what :meth:`KeycloakAdapter.detect_version` asks
to learn whether Keycloak filters on the marker."""
SEARCHABLE_HINT = (
    "set KC_SPI_CLIENT__JPA__SEARCHABLE_ATTRIBUTES=dcr.gateway.managed on Keycloak 26.3 and later "
    "(KC_SPI_CLIENT_JPA_SEARCHABLE_ATTRIBUTES before 26.3) so listings read managed clients only"
)
SESSION_STATS_ROLE = "view-realm"
"""The ``realm-management`` role Keycloak requires for ``GET /admin/realms/{realm}/client-session-stats``."""
MANAGE_CLIENTS = "manage-clients"
"""The one ``realm-management`` role the gateway's service account needs (README, Keycloak section)."""
_REALM_MISSING = ("Realm does not exist", "Realm not found")
"""Keycloak's words for a realm that is not there: ``{"error":"Realm does not exist"}`` (HTTP 404 from
``/realms/{realm}/...``, e.g. the token endpoint) and ``{"error":"Realm not found."}`` (from ``/admin/realms/...``)."""
_CREDENTIALS = (
    "DCR_KEYCLOAK__CLIENT_ID / DCR_KEYCLOAK__CLIENT_SECRET (TOML keycloak.client_id / keycloak.client_secret)"
)
_REALMS = "DCR_KEYCLOAK__REALMS (TOML keycloak.realms)"
_ADMIN_URL = "DCR_KEYCLOAK__ADMIN_URL (TOML keycloak.admin_url; default DCR_PROVIDER_URL)"


def realm_missing(body: bytes | str | None) -> bool:
    """Whether a Keycloak 404 body says the realm (not a client) does not exist."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    return any(words in text for words in _REALM_MISSING)


def _refusal(code: int, action: str) -> AdapterError:
    """Keycloak refusing the gateway: HTTP 403 is a missing role, anything else (401) the credentials themselves."""
    if code == 403:
        return RoleMissing(
            f"keycloak {action}: forbidden (HTTP 403); the service account of the gateway's client needs "
            f"realm-management/{MANAGE_CLIENTS}",
            setting="DCR_KEYCLOAK__CLIENT_ID",
        )
    return CredentialsRefused(
        f"keycloak {action}: admin credentials refused (HTTP {code}); set {_CREDENTIALS}",
        setting="DCR_KEYCLOAK__CLIENT_SECRET",
    )


def _token_claims(token: str) -> dict[str, Any]:
    """The claims of an access token the token endpoint just issued to us (read, not verified: only to name a
    missing role; the admin API is the authority)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


STORED_LENGTHS = {
    "client_name": StoredLength(255, LengthUnit.UTF16, "CLIENT.NAME NVARCHAR(255)"),
    "client_uri": StoredLength(255, LengthUnit.UTF8, "CLIENT.BASE_URL VARCHAR(255)"),
    "redirect_uris": StoredLength(255, LengthUnit.UTF8, "REDIRECT_URIS.VALUE VARCHAR(255)"),
}
"""Keycloak's columns (its Liquibase changelogs, 26.x) for what a registration sets: ``CLIENT.NAME`` is
``NVARCHAR(255)``, counted in UTF-16 code units by H2 (the dev database), SQL Server and Oracle; ``BASE_URL`` and
``REDIRECT_URIS.VALUE`` are ``VARCHAR(255)``, bytes on Oracle (byte semantics) and SQL Server. Client attributes
(``logoUri``, ``tosUri``, ``policyUri``, ``post.logout.redirect.uris``, the gateway's JSON) are ``NCLOB`` since
Keycloak 20: no limit. A longer value is "Uncaught server error" inside Keycloak, so it is refused first."""


_NOT_SENT = NOT_SENT
"""aiohttp failures before a request went out: the connection was never established."""


class KeycloakAdapter:
    """Creates and manages Keycloak clients through ``/admin/realms/{realm}/clients``."""

    name = "keycloak"
    capabilities = Capabilities(
        stored_lengths=STORED_LENGTHS,
        # the login theme shows the client name through advancedMsg: "${loginAccountTitle}" is the realm's text
        message_template_fields=frozenset({"client_name"}),
    )

    def __init__(
        self,
        *,
        server_url: str,
        public_url: str,
        realms: list[str],
        client_id: str,
        client_secret: str,
        verify_tls: bool = True,
        timeout: float = 10.0,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        self._deployment = deployment
        self._server_url = server_url.rstrip("/")
        self._public_url = public_url.rstrip("/")
        self._realms = list(realms)
        self._client_id = client_id
        self._client_secret = client_secret
        self._verify = verify_tls
        self._timeout = timeout
        self._admins: dict[str, KeycloakAdminClient] = {}
        self._session: aiohttp.ClientSession | None = None
        self._scopes: dict[str, tuple[float, RealmScopes]] = {}
        self._scope_locks: dict[str, asyncio.Lock] = {}
        self._realm_management: dict[str, str] = {}
        """Internal id of each realm's ``realm-management`` client (for service-account role checks)."""
        self._resource_scopes: BoundedCache[tuple[str, str], str] = BoundedCache()
        """(realm, resource) -> internal id of the resource's client scope (it exists, with its audience mapper)."""
        self._prepared: BoundedCache[tuple[str, str, str, str], bool] = BoundedCache()
        """(realm, kind, clientId, resource or redirect URI) already in the client: no admin call needed."""
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._searchable: dict[str, bool] = {}
        """Per realm: ``False`` once Keycloak refused the managed-marker search (:data:`MANAGED_QUERY`)."""
        self._session_stats_refused: dict[str, bool] = {}
        """Per realm: ``True`` once Keycloak refused ``client-session-stats`` (no ``view-realm``)."""
        self.session_stats_unread: dict[str, str] = {}
        """Per realm: why the last listing could not read ``client-session-stats`` (none: it could)."""
        self._detected: ProviderVersion | None = None

    def issuers(self) -> list[Issuer]:
        return [
            Issuer(
                key=realm,
                path=f"/realms/{realm}",
                metadata_url=f"{self._public_url}/realms/{realm}/.well-known/openid-configuration",
                native_registration_paths=(f"/realms/{realm}/clients-registrations/",),
                # OIDC endpoints, the login flow's pages and forms, identity-provider brokering, the device
                # flow's user page, and the themes' static files (/resources/{version}/login/...)
                public_paths=(
                    f"/realms/{realm}/protocol/openid-connect/",
                    f"/realms/{realm}/login-actions/",
                    f"/realms/{realm}/broker/",
                    f"/realms/{realm}/device",
                    "/resources/",
                ),
                account_paths=(f"/realms/{realm}/account",),
                authorization_path=f"/realms/{realm}/protocol/openid-connect/auth",
                token_path=f"/realms/{realm}/protocol/openid-connect/token",
                par_path=f"/realms/{realm}/protocol/openid-connect/ext/par/request",
                revocation_path=f"/realms/{realm}/protocol/openid-connect/revoke",
            )
            for realm in self._realms
        ]

    async def start(self, session: aiohttp.ClientSession) -> None:
        """One admin client per realm on the app's ``session`` (its keep-alive pool, bounded by its connector; the
        same session serves :meth:`check`), each with the realm's service-account token
        (:class:`~adapters.keycloak.admin.ServiceAccountToken`: client credentials, RFC 6749 section 4.4)."""
        self._session = session
        ssl = bool(self._verify)
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        for realm in self._realms:
            token = ServiceAccountToken(
                session,
                token_url=f"{self._server_url}/realms/{quote(realm, safe='')}/protocol/openid-connect/token",
                client_id=self._client_id,
                client_secret=self._client_secret,
                ssl=ssl,
                timeout=timeout,
            )
            self._admins[realm] = KeycloakAdminClient(
                session, server_url=self._server_url, realm=realm, token=token, ssl=ssl, timeout=timeout
            )
            self._scope_locks[realm] = asyncio.Lock()

    async def close(self) -> None:
        """Forget the tokens (a token request under way is cancelled); the session is the app's to close."""
        for admin in self._admins.values():
            try:
                await admin.aclose()
            except Exception as exc:  # closing must not mask the shutdown reason
                log.debug("keycloak.close_failed", error=type(exc).__name__)
        self._admins.clear()

    # ------------------------------------------------------------------------------- admin API check

    async def check(self) -> None:
        """For every served realm: a token with the client credentials at the realm's token endpoint (refused:
        :class:`CredentialsRefused`; no such realm: :class:`IssuerMissing`), then one page of the realm's clients
        from the admin API with it (HTTP 403, or a token without ``realm-management/manage-clients``:
        :class:`RoleMissing`). Unreachable, timing out or 5xx: :class:`ProviderUnavailable`. Nothing is changed."""
        for realm in self._realms:
            token = await self._check_token(realm)
            await self._check_admin_api(realm, token)

    async def _check_request(self, method: str, url: str, realm: str, **kwargs: Any) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("KeycloakAdapter.start() was not called")
        try:
            async with self._session.request(
                method,
                url,
                ssl=bool(self._verify),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                allow_redirects=False,
                **kwargs,
            ) as response:
                body = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ProviderUnavailable(f"keycloak check of realm {realm!r}: {type(exc).__name__}: {exc}") from exc
        if response.status >= 500:
            raise ProviderUnavailable(f"keycloak check of realm {realm!r}: HTTP {response.status} from {url}")
        return response.status, body

    async def _check_token(self, realm: str) -> str:
        url = f"{self._server_url}/realms/{quote(realm, safe='')}/protocol/openid-connect/token"
        form = {"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._client_secret}
        cache = self._admins.get(realm)
        asked_at = cache.token.clock() if cache is not None else 0.0
        status, body = await self._check_request("POST", url, realm, data=form)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        payload = payload if isinstance(payload, dict) else {}
        if status == 200 and isinstance(payload.get("access_token"), str):
            token: str = payload["access_token"]
            if cache is not None:  # the admin calls' token, too: the first registration asks for none
                cache.token.accept(payload, asked_at)
            return token
        if status == 404 and realm_missing(body):
            raise IssuerMissing(f"Keycloak has no realm {realm!r}; set {_REALMS}", setting="DCR_KEYCLOAK__REALMS")
        if status in (400, 401) and "error" in payload:
            # A realm being deleted loses its clients before it disappears, and a token request racing that
            # deletion is refused as ``invalid_client``: only a realm that still answers has refused the secret.
            if await self._realm_gone(realm):
                raise IssuerMissing(f"Keycloak has no realm {realm!r}; set {_REALMS}", setting="DCR_KEYCLOAK__REALMS")
            error = str(payload.get("error"))[:80]
            description = str(payload.get("error_description") or "")[:160]
            raise CredentialsRefused(
                f"Keycloak realm {realm!r} refused client {self._client_id!r} and its secret at the token endpoint "
                f"(HTTP {status} {error}{': ' + description if description else ''}); set {_CREDENTIALS}",
                setting="DCR_KEYCLOAK__CLIENT_SECRET",
            )
        raise ProviderMisconfigured(
            f"no Keycloak token endpoint for realm {realm!r} (HTTP {status} at /realms/{realm}/protocol/openid-connect/"
            f"token); set {_ADMIN_URL} to Keycloak's base URL",
            setting="DCR_KEYCLOAK__ADMIN_URL",
        )

    async def _realm_gone(self, realm: str) -> bool:
        """Whether Keycloak answers ``Realm does not exist`` for the realm's public document ``/realms/{realm}``."""
        url = f"{self._server_url}/realms/{quote(realm, safe='')}"
        status, body = await self._check_request("GET", url, realm, headers={"Accept": "application/json"})
        return status == 404 and realm_missing(body)

    async def _check_admin_api(self, realm: str, token: str) -> None:
        url = f"{self._server_url}/admin/realms/{quote(realm, safe='')}/clients"
        params = {"first": "0", "max": "1", "briefRepresentation": "true"}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        status, body = await self._check_request("GET", url, realm, params=params, headers=headers)
        role_missing = RoleMissing(
            f"the service account of client {self._client_id!r} in realm {realm!r} lacks the role "
            f"realm-management/{MANAGE_CLIENTS} (grant it in Keycloak, or set {_CREDENTIALS} to a client that has it)",
            setting="DCR_KEYCLOAK__CLIENT_ID",
        )
        if status == 403:
            raise role_missing
        if status == 404 and realm_missing(body):
            raise IssuerMissing(f"Keycloak has no realm {realm!r}; set {_REALMS}", setting="DCR_KEYCLOAK__REALMS")
        if status == 401:
            raise CredentialsRefused(
                f"Keycloak's admin API refused the token of client {self._client_id!r} in realm {realm!r} (HTTP 401); "
                f"set {_CREDENTIALS}, and {_ADMIN_URL} to the address Keycloak issues tokens for",
                setting="DCR_KEYCLOAK__CLIENT_SECRET",
            )
        if status != 200:
            raise ProviderMisconfigured(
                f"no Keycloak admin API for realm {realm!r} (HTTP {status} at /admin/realms/{realm}/clients); "
                f"set {_ADMIN_URL} to Keycloak's base URL",
                setting="DCR_KEYCLOAK__ADMIN_URL",
            )
        # A token that names its client roles but not manage-clients can read clients (view-clients) yet cannot
        # create them: say so now rather than at the first registration.
        access = _token_claims(token).get("resource_access")
        if isinstance(access, dict):
            roles = (
                access.get("realm-management", {}).get("roles", [])
                if isinstance(access.get("realm-management"), dict)
                else []
            )
            if MANAGE_CLIENTS not in roles:
                raise role_missing

    # ----------------------------------------------------------------------------------- provider version

    async def detect_version(self) -> ProviderVersion:
        """The Keycloak release and what differs between the supported ones (README, "Supported providers"), once.

        The version is ``systemInfo.version`` of ``GET /admin/serverinfo`` with the service account's token. Keycloak
        26.4 and later leave ``systemInfo`` out for an administrator of another realm than ``master`` (unless it
        holds ``manage-realm``, which the gateway does not need), so the version is often unknown there; what the
        adapter acts on is therefore probed, not inferred from it:

        - ``managed_marker_search``: ``GET /admin/realms/{realm}/clients?q=dcr.gateway.managed:true&max=1`` per realm.
          Keycloak 26.5 and later refuse a marker that is not a searchable attribute (400); 24 to 26.4 ignore it and
          answer every client. Either way the adapter then lists every client and filters them itself (logged once,
          with the setting that turns server-side filtering on for that release).
        - ``rfc8414_path_insertion``: Keycloak 26.4 and later serve ``/.well-known/oauth-authorization-server/realms/
          {realm}`` themselves (with their own ``registration_endpoint``). The gateway answers that path with its
          rewritten document and the front door never forwards it, whatever the release.
        """
        if self._detected is not None:
            return self._detected
        realm = self._realms[0]
        version: str | None = None
        source = "GET /admin/serverinfo"
        try:
            response = await self._raw_get(realm, "server info", "admin/serverinfo")
            info = response.json() if response.status_code == 200 else None
            system = info.get("systemInfo") if isinstance(info, dict) else None
            if isinstance(system, dict) and isinstance(system.get("version"), str):
                version = system["version"][:40]
            elif response.status_code == 200:
                source = "GET /admin/serverinfo has no systemInfo for this service account (Keycloak 26.4 and later)"
            else:
                source = f"GET /admin/serverinfo answered HTTP {response.status_code}"
        except (AdapterError, ValueError) as exc:
            source = f"GET /admin/serverinfo failed: {type(exc).__name__}"
        searchable = True
        for served in self._realms:
            searchable = await self._probe_marker_search(served) and searchable
        detected = ProviderVersion(
            provider=self.name,
            version=version,
            features={
                "managed_marker_search": searchable,
                "rfc8414_path_insertion": await self._serves_path_inserted_metadata(realm),
            },
            source=source,
        )
        self._detected = detected
        return detected

    async def _probe_marker_search(self, realm: str) -> bool:
        """Whether Keycloak filters this realm's clients on the managed marker (then listings read managed clients
        only); remembered for the listings. Asked with a marker value no client has (:data:`MARKER_PROBE`): a
        Keycloak that filters answers an empty page; one that ignores the attribute answers the realm's clients
        (every realm has built-in ones); one that refuses it answers 400."""
        try:
            response = await self._raw_get(
                realm, "list clients", f"admin/realms/{realm}/clients", q=MARKER_PROBE, first=0, max=1
            )
            page = response.json() if response.status_code == 200 else None
        except (AdapterError, ValueError):
            return True  # unknown: the first listing finds out
        if response.status_code == 400:
            reason = "refused"
        elif isinstance(page, list) and page:
            reason = "ignored"  # 24 to 26.4: an attribute that is not searchable is dropped from the query
        else:
            return True
        self._searchable[realm] = False
        log.info("keycloak.marker_not_searchable", realm=realm, keycloak=reason, hint=SEARCHABLE_HINT)
        return False

    async def _serves_path_inserted_metadata(self, realm: str) -> bool:
        """Whether Keycloak itself answers the RFC 8414 section 3.1 path-inserted metadata URL of ``realm``."""
        if self._session is None:
            return False
        url = f"{self._server_url}/.well-known/oauth-authorization-server/realms/{quote(realm, safe='')}"
        try:
            async with self._session.get(
                url, ssl=bool(self._verify), timeout=aiohttp.ClientTimeout(total=self._timeout), allow_redirects=False
            ) as response:
                await response.read()
                return response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    # ------------------------------------------------------------------------------------- helpers

    def _admin(self, realm: str) -> KeycloakAdminClient:
        try:
            return self._admins[realm]
        except KeyError:
            raise ClientNotFound(f"realm {realm!r} is not served") from None

    @staticmethod
    def _unavailable(exc: KeycloakError, action: str) -> ProviderUnavailable | None:
        """Transport failures, 5xx and redirects (never followed; the admin API does not redirect) are the provider
        being unavailable. Nothing was sent when the connection was never established, or when the step before
        the request failed (no token could be had: :class:`~adapters.keycloak.admin.ServiceAccountToken`)."""
        code = exc.response_code
        if code == 404 and not exc.request_sent and not realm_missing(exc.error_message):
            # no token endpoint there (a wrong admin URL): not a missing client
            return ProviderUnavailable(f"keycloak {action}: token endpoint not found (HTTP 404)", request_sent=False)
        if not (isinstance(exc, KeycloakConnectionError) or code is None or code >= 500 or 300 <= code < 400):
            return None
        if isinstance(exc.__cause__, _NOT_SENT) or not exc.request_sent:
            # the transport's own words (no body, no credential): "ClientConnectorError", "token request: ..."
            return ProviderUnavailable(
                f"keycloak {action}: {exc.error_message!s}, nothing was sent", request_sent=False
            )
        return ProviderUnavailable(f"keycloak {action}: {type(exc).__name__} (HTTP {code})")

    @classmethod
    def _translate(cls, exc: KeycloakError, action: str) -> AdapterError:
        unavailable = cls._unavailable(exc, action)
        if unavailable is not None:
            return unavailable
        code: int = exc.response_code or 0  # not None: that is "unavailable" above
        if code in (401, 403) or isinstance(exc, KeycloakAuthenticationError):
            return _refusal(code, action)
        if code == 409:
            return ClientConflict(f"keycloak {action}: conflict")
        if code == 404:
            # A deleted (or never created) realm is a server-side fault, never the client's (issue 8 item 11).
            if realm_missing(exc.error_message):
                missing = IssuerMissing(
                    f"keycloak {action}: the realm does not exist; set {_REALMS}", setting="DCR_KEYCLOAK__REALMS"
                )
                missing.request_sent = exc.request_sent  # False when the token request found no realm
                return missing
            return ClientNotFound(f"keycloak {action}: not found")
        return ProviderRejected(f"keycloak {action}: rejected (HTTP {code})")

    async def _call(self, action: str, coroutine: Any) -> Any:
        try:
            return await coroutine
        except KeycloakError as exc:
            raise self._translate(exc, action) from exc
        except _NOT_SENT as exc:
            raise ProviderUnavailable(f"keycloak {action}: {type(exc).__name__}", request_sent=False) from exc
        except ConnectionRefusedError as exc:
            raise ProviderUnavailable(f"keycloak {action}: {type(exc).__name__}", request_sent=False) from exc
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            raise ProviderUnavailable(f"keycloak {action}: {type(exc).__name__}") from exc

    async def realm_scopes(self, realm: str) -> RealmScopes:
        """The realm's client scopes, cached for :data:`REALM_SCOPES_TTL` seconds. One caller refreshes them;
        meanwhile the others go on with the previous value instead of queueing behind the refresh (three admin
        round trips). Without any value yet, everyone waits for the first read."""
        cached = self._scopes.get(realm)
        lock = self._scope_locks[realm]
        if cached and (time.monotonic() - cached[0] < REALM_SCOPES_TTL or lock.locked()):
            return cached[1]
        async with lock:
            cached = self._scopes.get(realm)
            if cached and time.monotonic() - cached[0] < REALM_SCOPES_TTL:
                return cached[1]
            admin = self._admin(realm)
            scopes = await self._call("list client scopes", admin.a_get_client_scopes())
            defaults = await self._call("default scopes", admin.a_get_default_default_client_scopes())
            optional = await self._call("optional scopes", admin.a_get_default_optional_client_scopes())
            value = RealmScopes(
                names=frozenset(s["name"] for s in scopes if s.get("protocol", "openid-connect") == "openid-connect"),
                default_default=tuple(s["name"] for s in defaults),
                default_optional=tuple(s["name"] for s in optional),
            )
            self._scopes[realm] = (time.monotonic(), value)
            return value

    async def registrable_scopes(self, issuer: str) -> frozenset[str]:
        """What a registration in the realm can get (:func:`~adapters.keycloak.mapping.registrable_scope_names`),
        from the cached realm scopes: the gateway's discovery advertises no other (RFC 8414 section 2)."""
        return registrable_scope_names(await self.realm_scopes(issuer))

    async def _find(self, realm: str, client_id: str) -> dict[str, Any]:
        """The managed client's representation; :class:`ClientNotFound` for absent or unmanaged ones, and for an
        id no client can have (:func:`~adapters.base.addressable_client_id`), without a request."""
        admin = self._admin(realm)
        if not addressable_client_id(client_id):
            raise ClientNotFound("no client can have this client_id")
        response = await self._call(
            "find client",
            admin.connection.a_raw_get(f"admin/realms/{realm}/clients", clientId=client_id, search="false"),
        )
        if response.status_code >= 300:
            raise self._translate(
                KeycloakError(error_message=response.content, response_code=response.status_code), "find client"
            )
        matches = [c for c in response.json() if c.get("clientId") == client_id]
        if not matches or not is_managed(matches[0]) or document_url_of(matches[0]) is not None:
            raise ClientNotFound(client_id)  # document clients are not RFC 7592's
        representation: dict[str, Any] = matches[0]
        return representation

    async def _find_any(self, realm: str, client_id: str) -> dict[str, Any] | None:
        """The representation of ``client_id`` (a gateway id or a document URL), managed or not; ``None`` when
        Keycloak has none. The id travels as the ``clientId`` query parameter (exact match), never in a path."""
        if not (addressable_client_id(client_id) or document_url_syntax(client_id)):
            return None
        found = await self._raw_json(
            realm, "find client", f"admin/realms/{realm}/clients", clientId=client_id, search="false"
        )
        matches = [c for c in found if isinstance(c, dict) and c.get("clientId") == client_id]
        return matches[0] if matches else None

    # ---------------------------------------------------------------------------------- operations

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        client = with_deployment(client, self._deployment)
        try:
            realm_scopes = await self.realm_scopes(issuer)
        except ProviderUnavailable as exc:  # the create itself was not sent: nothing can have been created
            exc.request_sent = False  # the same error (a missing realm stays IssuerMissing), now known unsent
            raise
        representation = to_keycloak(client, realm_scopes)
        await self._call("create client", self._admin(issuer).a_create_client(representation))
        # One round trip: Keycloak takes the gateway's secret as given, so the answer is what we sent (read from the
        # representation sent, not mapped a second time: registered_view's work, halved).
        return from_keycloak(representation, client_secret=client.client_secret)

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        return from_keycloak(await self._find(issuer, client_id))

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        current = await self._find(issuer, client.client_id)
        return await self._replace(issuer, current, client)

    async def _replace(
        self, realm: str, current: dict[str, Any], client: NewClient, *, document: bool = False
    ) -> ManagedClient:
        """Replace ``current`` in full with ``client`` (:func:`~adapters.keycloak.mapping.replacing`), then read it
        back (the answer of a document client, too, is found by its URL)."""
        realm_scopes = await self.realm_scopes(realm)
        representation = replacing(to_keycloak(client, realm_scopes, document=document), current)
        if client.client_secret is None and not representation["publicClient"]:
            representation["secret"] = current.get("secret")
        await self._call("update client", self._admin(realm).a_update_client(current["id"], representation))
        self._forget_prepared(realm, client.client_id)
        try:
            if document:
                found = await self._find_any(realm, client.client_id)
                if found is None:
                    raise ClientNotFound(client.client_id)
                return from_keycloak(found)
            return from_keycloak(await self._find(realm, client.client_id))
        except ProviderUnavailable:
            # The update is applied: answering 503 now would lose a rotated token or a newly issued secret the
            # record already holds, so answer what was sent, as create does.
            log.warning("keycloak.update_read_back_failed", realm=realm, client_id=client.client_id)
            return registered_view(client, realm_scopes)

    async def delete_client(self, issuer: str, client_id: str) -> None:
        current = await self._find(issuer, client_id)
        await self._call("delete client", self._admin(issuer).a_delete_client(current["id"]))
        self._forget_prepared(issuer, client_id)

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        """Managed DCR clients; never document clients (:meth:`list_document_clients`: ``dcr-gateway clients``
        leaves them out, they are made again from their document on the next authorization)."""
        async for representation in self._managed_representations(issuer):
            if document_url_of(representation) is None:
                yield from_keycloak(representation)

    async def list_document_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        async for representation in self._managed_representations(issuer):
            if document_url_of(representation) is not None:
                yield from_keycloak(representation)

    async def _managed_representations(self, issuer: str) -> AsyncIterator[dict[str, Any]]:
        """Every managed client's representation in the realm, page by page."""
        async for page in self._managed_pages(issuer):
            for representation in page:
                yield representation

    async def _managed_pages(self, issuer: str) -> AsyncIterator[list[dict[str, Any]]]:
        """The managed clients' representations (DCR and document clients), one admin call per page of
        :data:`PAGE_SIZE`: filtered by Keycloak on the managed marker (:data:`MANAGED_QUERY`) where it allows it, so
        the pages hold managed clients only; else (a stock Keycloak's 400, remembered per realm) every client of
        the realm, filtered here."""
        first = 0
        searchable = self._searchable.get(issuer, True)
        while True:
            params: dict[str, Any] = {"first": first, "max": PAGE_SIZE}
            if searchable:
                params["q"] = MANAGED_QUERY
            response = await self._raw_get(issuer, "list clients", f"admin/realms/{issuer}/clients", **params)
            if response.status_code == 400 and searchable and first == 0:
                log.info(
                    "keycloak.marker_not_searchable",
                    realm=issuer,
                    hint=SEARCHABLE_HINT,
                )
                self._searchable[issuer] = searchable = False
                continue
            if response.status_code >= 400:
                raise ProviderUnavailable(f"keycloak list clients: HTTP {response.status_code}")
            page = response.json()
            if not isinstance(page, list):
                raise ProviderUnavailable("keycloak list clients: not a list")
            yield [r for r in page if isinstance(r, dict) and is_managed(r)]
            if len(page) < PAGE_SIZE:
                return
            first += PAGE_SIZE

    async def _raw_get(self, realm: str, action: str, path: str, **params: Any) -> Any:
        """One admin ``GET`` (``path`` relative to Keycloak's base URL), its response whatever the status."""
        return await self._call(action, self._admin(realm).connection.a_raw_get(path, **params))

    async def count_managed(self, issuer: str) -> int:
        """:class:`~adapters.base.ClientCount`: one pass over :meth:`_managed_pages` (``ceil(managed / 200)``
        calls with the marker searchable, ``ceil(all clients / 200)`` without), DCR and document clients."""
        count = 0
        async for page in self._managed_pages(issuer):
            count += len(page)
        return count

    async def _session_stats(self, realm: str) -> dict[str, tuple[int, int]] | None:
        """Active and offline session counts per client (internal id) from one call,
        ``GET /admin/realms/{realm}/client-session-stats`` (a client holding no session is absent: 0, 0).

        The call is optional: ``None`` (sessions unknown, read per client where ``gc`` needs them) when Keycloak
        refuses it (403: the service account lacks ``realm-management/view-realm``; remembered per realm, so it is
        not asked again), is unavailable for it (timeout, 5xx) or answers a body that is not the list of stats.
        The cause is kept in :attr:`session_stats_unread` and logged once per realm and cause."""
        if self._session_stats_refused.get(realm):
            return None
        try:
            response = await self._raw_get(realm, "client session stats", f"admin/realms/{realm}/client-session-stats")
        except ProviderUnavailable as exc:
            self._stats_unread(realm, f"Keycloak was unavailable for client-session-stats: {exc}")
            return None
        if response.status_code == 403:
            self._session_stats_refused[realm] = True
            self._stats_unread(
                realm,
                f"the gateway's service account lacks realm-management/{SESSION_STATS_ROLE}, which "
                "client-session-stats needs",
                event="keycloak.session_stats_forbidden",
            )
            return None
        if response.status_code >= 300:
            error = self._status_error(response, "client session stats")
            if isinstance(error, ProviderUnavailable):
                self._stats_unread(realm, f"Keycloak was unavailable for client-session-stats: {error}")
                return None
            raise error
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, list):
            self._stats_unread(realm, "Keycloak's client-session-stats answer was not a list of stats")
            return None
        stats: dict[str, tuple[int, int]] = {}
        for entry in payload:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                stats[entry["id"]] = (_count(entry.get("active")), _count(entry.get("offline")))
        self.session_stats_unread.pop(realm, None)
        return stats

    def _stats_unread(self, realm: str, cause: str, event: str = "keycloak.session_stats_unread") -> None:
        """Remember (and log, once per realm and cause) why the realm's session counts are unknown."""
        if self.session_stats_unread.get(realm) != cause:
            self.session_stats_unread[realm] = cause
            log.info(
                event,
                realm=realm,
                cause=cause,
                hint=f"grant realm-management/{SESSION_STATS_ROLE} to the gateway's service account to read session "
                "counts in one call per realm; without them they are read per client where gc needs them",
            )

    async def list_with_usage(self, issuer: str) -> AsyncIterator[UsagePage]:
        """:class:`~adapters.base.UsageListing`: the managed DCR clients a page at a time (:meth:`_managed_pages`),
        each with the times the gateway recorded in it and its session counts from one ``client-session-stats``
        call per listing (unknown, ``None``, without ``view-realm``). ``1 + ceil(managed / 200)`` admin calls with
        the marker searchable, whatever the number of clients."""
        stats = await self._session_stats(issuer)
        async for representations in self._managed_pages(issuer):
            page: UsagePage = []
            for representation in representations:
                if document_url_of(representation) is not None:
                    continue
                if stats is None:
                    sessions: tuple[int | None, int | None] = (None, None)
                else:
                    sessions = stats.get(str(representation.get("id")), (0, 0))
                usage = usage_from_keycloak(representation, sessions=sessions[0], offline_sessions=sessions[1])
                page.append((from_keycloak(representation), usage))
            if page:
                yield page

    # ------------------------------------------------------------------- client ID metadata documents (CIMD)

    def stored_client_id(self, issuer: str, url: str) -> str:
        """The URL itself: Keycloak's ``clientId`` may be any string (its own CIMD support stores the URL too), and
        the adapter finds it with the admin API's ``clientId`` query, never in a path."""
        return url

    def _lock(self, realm: str, key: str) -> asyncio.Lock:
        if len(self._locks) > 10_000:
            self._locks = {k: lock for k, lock in self._locks.items() if lock.locked()}
        return self._locks.setdefault((realm, key), asyncio.Lock())

    def _forget_prepared(self, realm: str, client_id: str) -> None:
        self._prepared.forget(lambda key: key[0] == realm and key[2] == client_id)

    async def read_document_client(self, issuer: str, url: str) -> ManagedClient | None:
        found = await self._find_any(issuer, url) if document_url_syntax(url) else None
        return from_keycloak(found) if found is not None and document_url_of(found) == url else None

    async def put_document_client(self, issuer: str, client: NewClient) -> ManagedClient:
        """Create the client with ``clientId`` = URL (public for ``none``, consent required, full scope off, as
        every managed client), or replace the managed one in full; :class:`ClientConflict` when another client
        holds the id. Concurrent puts of one URL in this instance run one after the other; a create or an update
        that collides with another instance's (409) is tried again on what that one wrote."""
        url = client.client_id
        if not document_url_syntax(url):
            raise ProviderRejected("keycloak: not a client metadata document URL", field_name="client_id")
        client = with_deployment(client, self._deployment)
        async with self._lock(issuer, url):
            for _ in range(3):
                current = await self._find_any(issuer, url)
                if current is None:
                    try:
                        realm_scopes = await self.realm_scopes(issuer)
                        representation = to_keycloak(client, realm_scopes, document=True)
                        await self._call("create client", self._admin(issuer).a_create_client(representation))
                    except ClientConflict:
                        continue
                    return registered_view(client, realm_scopes, document=True)
                if document_url_of(current) != url:
                    raise ClientConflict(f"keycloak: client {url!r} is not a document client of the gateway")
                try:
                    return await self._replace(issuer, current, client, document=True)
                except ClientConflict:
                    continue  # another instance's update of the same client at the same moment (HTTP 409)
        raise ProviderUnavailable(f"keycloak: client {url!r} keeps changing")

    async def delete_document_client(self, issuer: str, url: str) -> None:
        found = await self._find_any(issuer, url) if document_url_syntax(url) else None
        if found is None or document_url_of(found) != url:
            raise ClientNotFound(url)
        await self._call("delete client", self._admin(issuer).a_delete_client(found["id"]))
        self._forget_prepared(issuer, url)

    # ------------------------------------------------------------------- RFC 8707 resource indicators

    async def _resource_scope(self, realm: str, resource: str) -> str:
        """The internal id of the realm client scope that puts ``resource`` into ``aud``, created once: named
        :func:`~adapters.bindings.resource_scope_name`, not in the token's ``scope`` (``include.in.token.scope``
        false), shown on the consent screen as the resource, with an Audience mapper (``oidc-audience-mapper``,
        ``included.custom.audience`` = the resource, in access tokens and introspection, not in ID tokens).
        Concurrent first calls create one scope (a lock per resource; a 409 reads the one another instance
        made); a scope found without its mapper gets it."""
        cached = self._resource_scopes.get((realm, resource))
        if cached is not None:
            return cached
        name = resource_scope_name(resource)
        async with self._lock(realm, "scope " + resource):
            cached = self._resource_scopes.get((realm, resource))
            if cached is not None:
                return cached
            scope = await self._find_scope(realm, name)
            if scope is None:
                body = json.dumps(resource_scope_representation(name, resource))
                response = await self._call(
                    "create client scope",
                    self._admin(realm).connection.a_raw_post(f"admin/realms/{realm}/client-scopes", data=body),
                )
                if response.status_code not in (201, 409):
                    raise self._status_error(response, "create client scope")
                scope = await self._find_scope(realm, name)
                if scope is None:
                    raise ProviderUnavailable(f"keycloak: client scope {name} not found after its creation")
            if not any(m.get("name") == AUDIENCE_MAPPER for m in scope.get("protocolMappers") or []):
                response = await self._call(
                    "add audience mapper",
                    self._admin(realm).connection.a_raw_post(
                        f"admin/realms/{realm}/client-scopes/{scope['id']}/protocol-mappers/models",
                        data=json.dumps(audience_mapper(resource)),
                    ),
                )
                if response.status_code not in (201, 409):
                    raise self._status_error(response, "add audience mapper")
            scope_id = str(scope["id"])
            self._resource_scopes.put((realm, resource), scope_id)
            return scope_id

    async def _find_scope(self, realm: str, name: str) -> dict[str, Any] | None:
        scopes = await self._raw_json(realm, "list client scopes", f"admin/realms/{realm}/client-scopes")
        matches = [s for s in scopes if isinstance(s, dict) and s.get("name") == name]
        return matches[0] if matches else None

    def _status_error(self, response: Any, action: str) -> AdapterError:
        return self._translate(
            KeycloakError(error_message=response.content, response_code=response.status_code), action
        )

    async def bind_resource(self, issuer: str, client_id: str, resource: str) -> ResourceBinding:
        """RFC 8707 on Keycloak without its ``resource-indicators`` feature (the documented workaround): the
        resource's client scope (:meth:`_resource_scope`) becomes an optional client scope of the managed client,
        and the request adds that scope, so the access token's ``aud`` carries the resource (refreshes too). An
        unmanaged client is left as it is. Cached per instance: repeated authorizations cost no admin call."""
        binding = ResourceBinding(scope=resource_scope_name(resource))
        key = (issuer, "scope", client_id, resource)
        if self._prepared.get(key):
            return binding
        current = await self._find_any(issuer, client_id)
        if current is None:
            raise ClientNotFound(client_id)
        if not is_managed(current):
            return binding
        for attempt in range(2):
            scope_id = await self._resource_scope(issuer, resource)
            response = await self._call(
                "add optional client scope",
                self._admin(issuer).connection.a_raw_put(
                    f"admin/realms/{issuer}/clients/{current['id']}/optional-client-scopes/{scope_id}", data="{}"
                ),
            )
            if response.status_code == 404 and attempt == 0:
                # the cached scope was deleted in Keycloak meanwhile (or the client: then the next find says so)
                self._resource_scopes.forget(lambda k: k == (issuer, resource))
                current = await self._find_any(issuer, client_id)
                if current is None:
                    raise ClientNotFound(client_id)
                continue
            if response.status_code not in (204, 409):
                raise self._status_error(response, "add optional client scope")
            break
        self._prepared.put(key, True)
        return binding

    # ------------------------------------------------------------------- RFC 8252 section 7.3 loopback redirects

    def admits_any_port(self, redirect_uri: str) -> bool:
        """Keycloak 26.7 (``RedirectUtils.verifyRedirectUri``, ``LOOPBACK_INTERFACES``): when no registered URI
        matches an ``http`` request whose host is ``localhost``, ``127.0.0.1`` or ``[::1]``, it is matched again
        with the port removed. So a registered URI with one of these hosts works from any port when it has no port,
        or when the adapter registered a port-less copy of it (every loopback IP literal URI,
        :func:`~adapters.keycloak.mapping.keycloak_redirect_uris`); ``http://localhost:3000/cb`` works on 3000
        only. Measured against the real Keycloak in ``tests/integration/test_loopback_redirects.py``."""
        parts = urlsplit(redirect_uri)
        if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            return False
        try:
            port = parts.port
        except ValueError:
            return False
        return port is None or parts.hostname != "localhost"

    async def admit_redirect_uri(self, issuer: str, client_id: str, redirect_uri: str) -> None:
        """Adds ``redirect_uri`` to the managed client's ``redirectUris`` and to the admitted list in attribute
        :data:`~adapters.keycloak.mapping.ADMITTED_ATTRIBUTE` (one partial update: Keycloak keeps every field the
        body omits), dropping the oldest admitted ones beyond
        :data:`~adapters.bindings.MAX_ADMITTED_REDIRECT_URIS`; registered URIs stay. Cached per instance."""
        key = (issuer, "redirect", client_id, redirect_uri)
        if self._prepared.get(key):
            return
        async with self._lock(issuer, client_id):
            if self._prepared.get(key):
                return
            for attempt in range(3):
                current = await self._find_any(issuer, client_id)
                if current is None or not is_managed(current):
                    raise ClientNotFound(client_id)
                uris = [uri for uri in current.get("redirectUris") or [] if isinstance(uri, str)]
                if redirect_uri in uris:
                    break
                admitted = admitted_of(current)
                kept = admitted_after(admitted, redirect_uri)
                dropped = set(admitted) - set(kept)
                body = {
                    "id": current["id"],
                    "clientId": client_id,
                    "redirectUris": [uri for uri in uris if uri not in dropped] + [redirect_uri],
                    "attributes": {ADMITTED_ATTRIBUTE: json.dumps(kept, separators=(",", ":"))},
                }
                try:
                    await self._call("admit redirect uri", self._admin(issuer).a_update_client(current["id"], body))
                except ClientConflict as exc:
                    if attempt == 2:
                        raise ProviderUnavailable(f"keycloak: client {client_id!r} keeps changing") from exc
                    continue  # another instance updated the client at the same moment (HTTP 409): read again
                stale = {(issuer, "redirect", client_id, uri) for uri in dropped}
                self._prepared.forget(stale.__contains__)
                break
            self._prepared.put(key, True)

    # ------------------------------------------------------------------------- client hygiene (clients CLI)

    async def _raw_json(self, realm: str, action: str, path: str, **params: Any) -> Any:
        response = await self._call(action, self._admin(realm).connection.a_raw_get(path, **params))
        if response.status_code >= 400:
            raise self._translate(
                KeycloakError(error_message=response.content, response_code=response.status_code), action
            )
        return response.json()

    async def _session_count(self, realm: str, internal_id: str, kind: str) -> int:
        """``GET /admin/realms/{realm}/clients/{id}/session-count`` (or ``offline-session-count``)."""
        payload = await self._raw_json(realm, kind, f"admin/realms/{realm}/clients/{internal_id}/{kind}")
        count = payload.get("count") if isinstance(payload, dict) else None
        return count if isinstance(count, int) else 0

    async def usage(self, issuer: str, client_id: str) -> ClientUsage:
        """Session counts (in use now) and the times the gateway recorded in the client's attributes."""
        representation = await self._find(issuer, client_id)
        sessions, offline = await asyncio.gather(
            self._session_count(issuer, representation["id"], "session-count"),
            self._session_count(issuer, representation["id"], "offline-session-count"),
        )
        return usage_from_keycloak(representation, sessions=sessions, offline_sessions=offline)

    async def list_unmanaged(self, issuer: str) -> AsyncIterator[UnmanagedClient]:
        first = 0
        while True:
            page = await self._raw_json(
                issuer, "list clients", f"admin/realms/{issuer}/clients", first=first, max=PAGE_SIZE
            )
            for representation in page:
                if not is_managed(representation):
                    candidate = unmanaged_from_keycloak(representation, self._client_id)
                    if candidate.protected is None:
                        protection = await self._service_account_protection(issuer, representation)
                        candidate = replace(candidate, protected=protection)
                    yield candidate
            if len(page) < PAGE_SIZE:
                return
            first += PAGE_SIZE

    async def _service_account_protection(self, realm: str, representation: dict[str, Any]) -> str | None:
        """Why the client's service account makes it unadoptable: it holds a realm-management role or a realm admin
        role (effective: through composites and groups too), or its roles cannot be read. ``None`` otherwise."""
        if not representation.get("serviceAccountsEnabled"):
            return None
        clients = f"admin/realms/{realm}/clients"
        try:
            user = await self._raw_json(
                realm, "service account", f"{clients}/{representation['id']}/service-account-user"
            )
            management = self._realm_management.get(realm)
            if management is None:
                found = await self._raw_json(
                    realm, "find realm-management", clients, clientId=REALM_MANAGEMENT_CLIENT, search="false"
                )
                management = next(c["id"] for c in found if c.get("clientId") == REALM_MANAGEMENT_CLIENT)
                self._realm_management[realm] = management
            mappings = f"admin/realms/{realm}/users/{user['id']}/role-mappings"
            client_roles = await self._raw_json(
                realm, "service account roles", f"{mappings}/clients/{management}/composite"
            )
            realm_roles = await self._raw_json(realm, "service account roles", f"{mappings}/realm/composite")
        except ProviderAuthError:
            return UNCHECKABLE_SERVICE_ACCOUNT
        except (ClientNotFound, StopIteration, KeyError, TypeError):
            return UNCHECKABLE_SERVICE_ACCOUNT  # never adoptable when in doubt
        return service_account_protection(_role_names(client_roles), _role_names(realm_roles))

    async def adopt_client(
        self, issuer: str, client_id: str, gateway_data: Mapping[str, Any], *, conform: bool = True
    ) -> ManagedClient:
        """Adds the managed marker and the gateway's attributes; with ``conform`` also consent, full scope off and
        PKCE S256 (:func:`~adapters.keycloak.mapping.keycloak_differences`). Keycloak's update leaves every field
        the body omits (configuration, secret, scopes) as it is."""
        found = await self._raw_json(
            issuer, "find client", f"admin/realms/{issuer}/clients", clientId=client_id, search="false"
        )
        matches = [c for c in found if c.get("clientId") == client_id]
        if not matches:
            raise ClientNotFound(client_id)
        representation: dict[str, Any] = matches[0]
        if is_managed(representation):
            raise ClientConflict(f"keycloak: client {client_id!r} is managed already")
        protection = keycloak_protection(representation, self._client_id) or await self._service_account_protection(
            issuer, representation
        )
        if protection:
            raise AdoptionRefused(f"keycloak: client {client_id!r} is {protection}")
        attributes = adoption_attributes(representation, gateway_data, int(time.time()))
        body = {"id": representation["id"], "clientId": client_id, "attributes": attributes}
        if conform:
            body.update(conforming_update(representation, attributes))
        await self._call("adopt client", self._admin(issuer).a_update_client(representation["id"], body))
        return from_keycloak(await self._find(issuer, client_id))


def _count(value: Any) -> int:
    """A session count of ``client-session-stats`` (Keycloak sends them as strings)."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _role_names(roles: Any) -> list[str]:
    """The names in a list of ``RoleRepresentation``; anything unreadable counts as a role (never adoptable)."""
    if not isinstance(roles, list):
        return ["(unreadable role mappings)"]
    return [str(role.get("name")) if isinstance(role, dict) else "(unreadable role)" for role in roles]


@adapter_settings(KeycloakSettings)
def create_adapter(settings: Settings) -> KeycloakAdapter:
    """Built-in factory (see :mod:`adapters.registry`). The admin calls use the app's aiohttp session."""
    section = settings.section("keycloak", KeycloakSettings)
    return KeycloakAdapter(
        server_url=section.admin_url or settings.provider_url,
        public_url=settings.provider_url,
        realms=section.realms,
        client_id=section.client_id,
        client_secret=section.client_secret.get_secret_value(),
        verify_tls=section.verify_tls,
        timeout=settings.provider_timeout,
        deployment=settings.deployment,
    )
