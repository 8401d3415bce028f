"""Keycloak adapter: python-keycloak's async admin API, one ``KeycloakAdmin`` per realm.

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
import socket
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import httpx
import structlog
from keycloak import KeycloakAdmin, KeycloakOpenIDConnection
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakConnectionError, KeycloakError

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
    RoleMissing,
    UnmanagedClient,
    addressable_client_id,
    with_deployment,
)
from adapters.keycloak.mapping import (
    REALM_MANAGEMENT_CLIENT,
    UNCHECKABLE_SERVICE_ACCOUNT,
    RealmScopes,
    adoption_attributes,
    conforming_update,
    from_keycloak,
    is_managed,
    keycloak_protection,
    registered_view,
    registrable_scope_names,
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

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
"""httpx failures before a request went out: the connection was never established."""


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
        self._admins: dict[str, KeycloakAdmin] = {}
        self._session: aiohttp.ClientSession | None = None
        self._scopes: dict[str, tuple[float, RealmScopes]] = {}
        self._scope_locks: dict[str, asyncio.Lock] = {}
        self._realm_management: dict[str, str] = {}
        """Internal id of each realm's ``realm-management`` client (for service-account role checks)."""

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
        """One admin connection per realm; python-keycloak brings its own httpx transport (the app's ``session``
        serves :meth:`check`)."""
        self._session = session
        for realm in self._realms:
            connection = KeycloakOpenIDConnection(
                server_url=self._server_url + "/",
                realm_name=realm,
                user_realm_name=realm,
                client_id=self._client_id,
                client_secret_key=self._client_secret,
                verify=self._verify,
                timeout=int(self._timeout),
            )
            # python-keycloak's own httpx client sends small requests without TCP_NODELAY, which costs a
            # millisecond or more per admin call on loopback (bench/registration_latency.py); same pool, faster.
            await connection.async_s.aclose()
            connection.async_s = httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(
                    verify=self._verify,
                    socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                    limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
                ),
            )
            self._admins[realm] = KeycloakAdmin(connection=connection)
            self._scope_locks[realm] = asyncio.Lock()

    async def close(self) -> None:
        for admin in self._admins.values():
            try:
                await admin.connection.aclose()
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
        status, body = await self._check_request("POST", url, realm, data=form)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        payload = payload if isinstance(payload, dict) else {}
        if status == 200 and isinstance(payload.get("access_token"), str):
            token: str = payload["access_token"]
            return token
        if status == 404 and realm_missing(body):
            raise IssuerMissing(f"Keycloak has no realm {realm!r}; set {_REALMS}", setting="DCR_KEYCLOAK__REALMS")
        if status in (400, 401) and "error" in payload:
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

    # ------------------------------------------------------------------------------------- helpers

    def _admin(self, realm: str) -> KeycloakAdmin:
        try:
            return self._admins[realm]
        except KeyError:
            raise ClientNotFound(f"realm {realm!r} is not served") from None

    @staticmethod
    def _unavailable(exc: KeycloakError, action: str) -> ProviderUnavailable | None:
        """Transport failures, 5xx and redirects (never followed: httpx's default, kept; the admin API does not
        redirect) are the provider being unavailable; a connection never established sent nothing."""
        code = getattr(exc, "response_code", None)
        if isinstance(exc, KeycloakConnectionError) and isinstance(exc.__cause__, _NOT_SENT):
            # python-keycloak wraps every transport error
            return ProviderUnavailable(
                f"keycloak {action}: {type(exc.__cause__).__name__}, nothing was sent", request_sent=False
            )
        if isinstance(exc, KeycloakConnectionError) or code is None or code >= 500 or 300 <= code < 400:
            return ProviderUnavailable(f"keycloak {action}: {type(exc).__name__} (HTTP {code})")
        return None

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
            if realm_missing(getattr(exc, "error_message", None)):
                return IssuerMissing(
                    f"keycloak {action}: the realm does not exist; set {_REALMS}", setting="DCR_KEYCLOAK__REALMS"
                )
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
        except (TimeoutError, OSError, httpx.TransportError) as exc:
            raise ProviderUnavailable(f"keycloak {action}: {type(exc).__name__}") from exc

    async def realm_scopes(self, realm: str) -> RealmScopes:
        """The realm's client scopes, cached for :data:`REALM_SCOPES_TTL` seconds."""
        cached = self._scopes.get(realm)
        if cached and time.monotonic() - cached[0] < REALM_SCOPES_TTL:
            return cached[1]
        async with self._scope_locks[realm]:
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
        if not matches or not is_managed(matches[0]):
            raise ClientNotFound(client_id)
        representation: dict[str, Any] = matches[0]
        return representation

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
        # One round trip: Keycloak takes the gateway's secret as given, so the answer is what we sent.
        return registered_view(client, realm_scopes)

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        return from_keycloak(await self._find(issuer, client_id))

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        current = await self._find(issuer, client.client_id)
        realm_scopes = await self.realm_scopes(issuer)
        representation = to_keycloak(client, realm_scopes)
        representation["id"] = current["id"]
        if client.client_secret is None and not representation["publicClient"]:
            representation["secret"] = current.get("secret")
        # RFC 7592 section 2.2, a full replacement: Keycloak's update keeps whatever a representation leaves out,
        # so what the metadata omits is cleared explicitly (an empty attribute value removes the attribute).
        representation.setdefault("name", "")
        representation.setdefault("baseUrl", "")
        attributes = representation["attributes"]
        for attribute in ("logoUri", "policyUri", "tosUri", "post.logout.redirect.uris", "jwks.url", "jwks.string"):
            attributes.setdefault(attribute, "")
        attributes.setdefault("use.jwks.url", "false")
        attributes.setdefault("use.jwks.string", "false")
        await self._call("update client", self._admin(issuer).a_update_client(current["id"], representation))
        try:
            return from_keycloak(await self._find(issuer, client.client_id))
        except ProviderUnavailable:
            # The update is applied: answering 503 now would lose a rotated token or a newly issued secret the
            # record already holds, so answer what was sent, as create does.
            log.warning("keycloak.update_read_back_failed", realm=issuer, client_id=client.client_id)
            return registered_view(client, realm_scopes)

    async def delete_client(self, issuer: str, client_id: str) -> None:
        current = await self._find(issuer, client_id)
        await self._call("delete client", self._admin(issuer).a_delete_client(current["id"]))

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        admin = self._admin(issuer)
        first = 0
        while True:
            response = await self._call(
                "list clients",
                admin.connection.a_raw_get(f"admin/realms/{issuer}/clients", first=first, max=PAGE_SIZE),
            )
            if response.status_code >= 400:
                raise ProviderUnavailable(f"keycloak list clients: HTTP {response.status_code}")
            page = response.json()
            for representation in page:
                if is_managed(representation):
                    yield from_keycloak(representation)
            if len(page) < PAGE_SIZE:
                return
            first += PAGE_SIZE

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


def _role_names(roles: Any) -> list[str]:
    """The names in a list of ``RoleRepresentation``; anything unreadable counts as a role (never adoptable)."""
    if not isinstance(roles, list):
        return ["(unreadable role mappings)"]
    return [str(role.get("name")) if isinstance(role, dict) else "(unreadable role)" for role in roles]


@adapter_settings(KeycloakSettings)
def create_adapter(settings: Settings) -> KeycloakAdapter:
    """Built-in factory (see :mod:`adapters.registry`). python-keycloak brings its own httpx client."""
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
