"""The provider plug-in interface: what the gateway relies on from an adapter, stated as rules.

A provider adapter turns validated RFC 7591 client metadata into one admin call against a provider
(Keycloak, Hydra, ...), and reads clients back. It is a :class:`typing.Protocol`, so an implementation
(or a test double) needs no inheritance; shared concerns (validation, rate limits, mapping errors to RFC
responses, rollback of a failed registration) stay in the gateway that calls it.

The rules (each one is checked by the adapter contract suite, :mod:`gateway.testing.adapter_contract`):

1. **Managed clients only.** Every client an adapter creates carries a *managed* mark in the provider's own
   record. A client without it (created by someone else) is invisible: ``read_client``, ``update_client`` and
   ``delete_client`` raise :class:`ClientNotFound` for it, exactly as for a client that does not exist, and
   ``list_clients`` never yields it, although the adapter's admin credentials could reach it.
2. **The gateway's identifiers and secrets are used as given.** ``NewClient.client_id`` and
   ``NewClient.client_secret`` are the client's id and secret at the provider (the gateway has already returned
   them to the client, RFC 7591 section 3.2.1); ``client_id_issued_at`` comes back as given.
3. **Metadata comes back as registered.** What ``create_client``, ``read_client`` and ``update_client`` return is
   what the provider will enforce, in RFC 7591 terms; the echoed ``token_endpoint_auth_method`` is the registered
   one (the one that works at the token endpoint). Only ``scope`` may differ from what was sent, and then it is
   the provider's answer (Keycloak keeps the realm's default scopes; Hydra its default scope when none was
   asked), the same on create and on every later read.
4. **``gateway_data`` comes back unchanged** (JSON values: strings, numbers, booleans, lists, objects), plus the
   deployment the adapter records with :func:`with_deployment` under :data:`DEPLOYMENT_KEY`.
5. **Updates are full replacements** (RFC 7592 section 2.2): a field the new metadata omits is cleared in the
   provider. An update whose ``client_secret`` is ``None`` keeps the current secret when the auth method uses
   one; an update to ``token_endpoint_auth_method: none`` drops the secret; an update with a secret sets it.
6. **Errors are the contract's own.** Only :class:`AdapterError` subclasses escape an adapter method:
   :class:`ClientConflict` for a ``client_id`` that exists (managed or not), :class:`ClientNotFound` for a
   missing or unmanaged client (also on ``delete_client`` and for an id no client can have, see
   :func:`addressable_client_id`), :class:`ProviderRejected` for metadata the provider refuses,
   :class:`ProviderAuthError` (:class:`CredentialsRefused`, :class:`RoleMissing`) when it refuses the gateway's
   credentials, :class:`IssuerMissing` for a served issuer that is gone, :class:`ProviderUnavailable` when it
   cannot be reached, times out (``settings.provider_timeout``) or fails (5xx), with ``request_sent=False`` when
   the request certainly never reached it (the gateway then skips the rollback of a create). Anything else
   (``KeyError``, a library's own exception) is a bug in the adapter: the gateway answers it ``500 server_error``
   and logs it.

The gateway reads from :class:`Capabilities` only ``stored_lengths`` and ``message_template_fields`` (the
registration policy). Optional capabilities are separate protocols, detected with ``isinstance``:
:class:`AdminApiCheck` (start-up check and ``/readyz``), :class:`RegistrableScopes` (discovery's
``scopes_supported``), :class:`ClientHygiene` (``dcr-gateway clients gc`` and ``adopt``), and for scale
:class:`UsageListing` (``clients list``/``gc`` page by page) and :class:`ClientCount` (the quota's recount).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from gateway.oauth.lengths import StoredLength
from gateway.oauth.metadata import ClientMetadata

if TYPE_CHECKING:
    import aiohttp

    from gateway.settings import Settings


@dataclass(frozen=True)
class Capabilities:
    """What the provider's storage and pages impose on registrations; the gateway's registration policy reads
    both fields (``gateway.app`` hands them to it), so a registration the provider could not store or would render
    wrongly is refused with an RFC 7591 error naming the field instead of failing in the provider. The default, no
    entries, puts no limit beyond the policy's own."""

    stored_lengths: Mapping[str, StoredLength] = field(default_factory=dict)
    """Per RFC 7591 metadata field (each item of a list field): the column it lands in, its size and what that
    column counts (:mod:`gateway.oauth.lengths`). A field without an entry has no limit below the registration
    policy's own (``policy.max_uri_length``, ``policy.max_string_length``)."""
    message_template_fields: frozenset[str] = frozenset()
    """Metadata fields the provider renders through its message bundles on login or consent pages, where
    ``${key}`` shows the provider's own text (Keycloak's ``advancedMsg`` on the client name): refused there."""


CLIENT_ID_SYNTAX = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9\-._~!$&'()*+,;=:@]{1,255}\Z")
"""Client ids the gateway looks up (RFC 7592 section 2, ``dcr-gateway clients``): one RFC 3986 path segment
without percent-encoding (unreserved, sub-delims, ``:`` and ``@``), not ``.`` or ``..``, 1 to 255 characters.
It holds every id the gateway mints (UUIDs) and the ids shims commonly chose; it excludes ``/``, ``\\``, ``%``,
``?``, ``#``, whitespace, control characters and non-ASCII, which no registration the gateway issued has and which
can reach other provider endpoints (Hydra cleans ``/admin/clients/..%2Fkeys`` into ``/admin/keys``) or fail in
the provider's database (NUL). Hydra's and Keycloak's client id columns are VARCHAR(255)."""


def addressable_client_id(client_id: str) -> bool:
    """Whether ``client_id`` may be looked up at all (:data:`CLIENT_ID_SYNTAX`): anything else is no managed
    client, answered as one, without a provider call."""
    return CLIENT_ID_SYNTAX.match(client_id) is not None


@dataclass(frozen=True)
class Issuer:
    """One issuer served by an adapter (one Keycloak realm, or Hydra itself)."""

    key: str
    """Adapter-specific name: the realm for Keycloak, ``default`` for Hydra."""
    path: str
    """Path part of the issuer URL: ``/realms/mcp`` for Keycloak, ``""`` for a root issuer."""
    metadata_url: str
    """Provider-internal URL of the issuer's OpenID discovery document."""
    native_registration_paths: tuple[str, ...] = ()
    """Path prefixes of the provider's own registration endpoints, which the front door can close."""
    public_paths: tuple[str, ...] = ()
    """Path prefixes of what OAuth clients and browsers use of this issuer at the provider (authorization,
    token, JWKS, login and consent pages and the static files they load): what the front door forwards. A
    prefix covers itself and the paths below it. Empty: everything under the issuer's path."""
    account_paths: tuple[str, ...] = ()
    """Path prefixes of the provider's self-service account pages, forwarded only when the operator enables
    them (``front_door.account_pages``)."""
    authorization_path: str | None = None
    """Path of the issuer's authorization endpoint (RFC 6749 section 3.1) at the provider's public listener: the
    front door checks authorization requests there (CIMD, RFC 8707 ``resource``, loopback redirects) and adds
    RFC 9207 ``iss`` to its responses. ``None``: taken from the discovery document."""
    token_path: str | None = None
    """Path of the token endpoint (RFC 6749 section 3.2); ``None``: from the discovery document."""
    par_path: str | None = None
    """Path of the pushed authorization request endpoint (RFC 9126), if the provider has one."""
    revocation_path: str | None = None
    """Path of the revocation endpoint (RFC 7009), if the provider has one."""


@dataclass(frozen=True)
class NewClient:
    """A registration, validated and with gateway-generated credentials, ready to be created."""

    client_id: str
    client_secret: str | None
    client_id_issued_at: int
    client_secret_expires_at: int
    metadata: ClientMetadata
    gateway_data: Mapping[str, Any] = field(default_factory=dict)
    """Opaque gateway-owned values kept in the client record (e.g. a registration access token hash)."""


@dataclass(frozen=True)
class ManagedClient:
    """A managed client as the provider holds it, mapped back to RFC 7591 terms."""

    client_id: str
    metadata: ClientMetadata
    client_id_issued_at: int
    client_secret: str | None = None
    """Only when the provider returns it (create responses; Keycloak reads)."""
    client_secret_expires_at: int = 0
    gateway_data: Mapping[str, Any] = field(default_factory=dict)
    provider_ref: str | None = None
    """The provider's own handle when it differs from ``client_id`` (Keycloak's internal UUID)."""


class AdapterError(Exception):
    """Base of adapter failures: the only exceptions an adapter method may raise (rule 6 of this module). Messages
    are for logs and must not carry a secret; clients see RFC-shaped errors instead. Any other exception out of an
    adapter is a bug, answered ``500 server_error`` and logged with its traceback."""


class ProviderUnavailable(AdapterError):
    """The provider could not be reached, timed out, or answered 5xx: retry later (``503 temporarily_unavailable``
    with ``Retry-After``; ``/readyz`` 503 when raised by :meth:`AdminApiCheck.check`).

    ``request_sent`` is ``False`` when the request (for a create: the create itself) certainly never reached the
    provider (the connection was refused or never established, or a step before it failed): nothing can have
    changed there, so a create that failed this way needs no clean-up. Left ``True`` (the default) whenever in
    doubt: the gateway then deletes the client again (RFC 7591 registration rollback), which is harmless when the
    create never happened (``ClientNotFound``)."""

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class ProviderAuthError(AdapterError):
    """The gateway's admin credentials were refused: an operator must act; clients see 503 and the log says why."""


class ClientConflict(AdapterError):
    """``create_client``: a client with that ID exists already, managed or not (the existing one is left as it
    is). ``ClientHygiene.adopt_client``: the client is managed already."""


class ProviderRejected(AdapterError):
    """The provider refused the client representation (a 4xx other than auth/conflict): the registration gets
    ``400 invalid_client_metadata`` (or ``invalid_redirect_uri`` when ``field_name`` is ``redirect_uris``),
    without the provider's words, which are logged."""

    def __init__(self, message: str, *, field_name: str | None = None) -> None:
        super().__init__(message)
        self.field_name = field_name


class ClientNotFound(AdapterError):
    """No managed client with that ID: absent, deleted, not managed (rule 1) or an id no client can have
    (:func:`addressable_client_id`) all look the same. RFC 7592 answers it ``401 invalid_token``; after a failed
    registration the rollback's delete treats it as done."""


# ---------------------------------------------------------------------------------- admin API check
# At start and then periodically for ``/readyz``, the gateway checks that the provider's admin API works with its
# configuration. What the check finds is told apart, because the answers differ: a configuration the provider
# refuses stops the start with one line naming the setting; an unreachable provider is retried.


class ProviderMisconfigured(AdapterError):
    """The provider refuses the gateway's configuration: an operator must change ``setting``. Messages name the
    setting and never carry a credential. Subclasses keep their meaning for registrations (503)."""

    problem = "misconfigured"
    """What went wrong in a few words: ``credentials refused``, ``role missing``, ``realm missing``."""

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class CredentialsRefused(ProviderMisconfigured, ProviderAuthError):
    """The provider refused the admin credentials themselves (Keycloak: ``invalid_client`` at the token endpoint)."""

    problem = "credentials refused"


class RoleMissing(ProviderMisconfigured, ProviderAuthError):
    """The credentials work but lack the permission to manage clients (Keycloak: HTTP 403 from the admin API)."""

    problem = "role missing"


class IssuerMissing(ProviderMisconfigured, ProviderUnavailable):
    """A served issuer does not exist at the provider (Keycloak: "Realm does not exist"). At start it stops the
    gateway; afterwards (a realm deleted while serving) registrations get ``503 temporarily_unavailable``, never a
    500, and ``/readyz`` names it."""

    problem = "realm missing"


@runtime_checkable
class AdminApiCheck(Protocol):
    """Adapter capability behind the start-up check and ``/readyz`` (every built-in adapter has it; an adapter
    without it is ready once discovery works)."""

    async def check(self) -> None:
        """Use the admin API the way registrations will (credentials, permission, every served issuer) without
        changing anything. Raises :class:`ProviderMisconfigured` (a subclass) when the provider refuses the
        configuration, :class:`ProviderUnavailable` when it cannot be reached, times out or fails (5xx)."""
        ...


@runtime_checkable
class ProviderAdapter(Protocol):
    """What the gateway needs from a provider. All methods take the issuer key (see :class:`Issuer`)."""

    name: str
    capabilities: Capabilities

    def issuers(self) -> list[Issuer]:
        """Issuers this adapter serves."""
        ...

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Open connections. Called once inside the app's cleanup context with the app's HTTP session
        (adapters whose client library brings its own transport may ignore it)."""
        ...

    async def close(self) -> None:
        """Release what :meth:`start` opened."""
        ...

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        """Create the client, marked managed, with ``client.client_id`` and ``client.client_secret`` as given, in one
        admin call where the provider allows it; return what was stored (rules 2 to 4). :class:`ClientConflict`
        when the id exists; :class:`ProviderUnavailable` with ``request_sent=False`` when the create certainly never
        reached the provider."""
        ...

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        """Read a managed client as the provider holds it (rules 3 and 4; ``client_secret`` only when the provider
        can return it); :class:`ClientNotFound` when absent or not managed."""
        ...

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        """Replace a managed client's metadata and ``gateway_data`` (RFC 7592 section 2.2: a full replacement, rule
        5), keeping the managed mark; return what is stored now. :class:`ClientNotFound` when absent or not
        managed, without changing anything."""
        ...

    async def delete_client(self, issuer: str, client_id: str) -> None:
        """Delete a managed client; :class:`ClientNotFound` when absent (a second delete too) or not managed, and
        then nothing is deleted."""
        ...

    def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        """Every managed client of the issuer, each once, through every page of the provider's listing (never
        unmanaged ones). Read by the client quota (``limits.max_clients_per_issuer``) and ``dcr-gateway clients``."""
        ...


class AdapterFactory(Protocol):
    """Entry points of group ``dcr_gateway.adapters`` resolve to one of these: called once per gateway (and per
    ``dcr-gateway clients`` run) with the validated settings; it must not do I/O (:meth:`ProviderAdapter.start`
    does)."""

    def __call__(self, settings: Settings) -> ProviderAdapter: ...


# ------------------------------------------------------------------------------------ client hygiene
# ``dcr-gateway clients``: what a provider can tell about a managed client's use (for ``gc``), and taking over
# clients a hand-written shim created (``adopt``). Optional: an adapter without it still serves registrations.


@dataclass(frozen=True)
class ClientUsage:
    """What the provider can tell about a managed client's use; each field is ``None`` when it cannot tell.

    Timestamps are seconds since the epoch (like RFC 7591 ``client_id_issued_at``).
    """

    created_at: int | None = None
    updated_at: int | None = None
    """Last change of the client record (Hydra ``updated_at``; Keycloak: adoption time, it keeps no other)."""
    last_used_at: int | None = None
    active_sessions: int | None = None
    """User sessions holding the client now (Keycloak ``session-count``)."""
    offline_sessions: int | None = None
    """Offline sessions (long-lived refresh tokens) holding the client now (Keycloak ``offline-session-count``)."""


DEPLOYMENT_KEY = "deployment"
"""Key in a managed client's gateway data naming the gateway deployment that owns it (setting ``deployment``,
``DCR_DEPLOYMENT``). ``dcr-gateway clients`` lists, collects and deletes only its own deployment's clients, so
that a staging gateway sharing a realm with production never touches production's clients."""

DEFAULT_DEPLOYMENT = "default"
"""The deployment of a gateway that names none, and of clients registered before deployments were recorded."""


def deployment_of(client: ManagedClient) -> str:
    """The deployment that owns ``client``: recorded at registration or adoption; :data:`DEFAULT_DEPLOYMENT` for a
    client registered before the gateway recorded one."""
    value = client.gateway_data.get(DEPLOYMENT_KEY)
    return value if isinstance(value, str) and value else DEFAULT_DEPLOYMENT


def with_deployment(client: NewClient, deployment: str) -> NewClient:
    """``client`` with ``deployment`` recorded in its gateway data (what each adapter's ``create_client`` stores)."""
    return replace(client, gateway_data={**client.gateway_data, DEPLOYMENT_KEY: deployment})


@dataclass(frozen=True)
class SettingDifference:
    """A setting in which an adoption candidate differs from what every managed client has (README: managed
    clients require consent, have full scope off, ...). Adoption changes it unless told to keep it."""

    setting: str
    """The provider's own name for it (Keycloak ``consentRequired``, Hydra ``skip_consent``)."""
    current: str
    managed: str
    """The value every managed client has."""
    reason: str

    def __str__(self) -> str:
        return f"{self.setting} is {self.current}, managed clients have {self.managed} ({self.reason})"


@dataclass(frozen=True)
class UnmanagedClient:
    """A client the gateway did not create, seen as a candidate for adoption. Never carries a secret."""

    client_id: str
    client_name: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    """The client's free-form markers as strings (Keycloak attributes, Hydra top-level ``metadata`` values):
    what an adoption selects on (``--attribute KEY=VALUE``)."""
    privileges: tuple[str, ...] = ()
    """What makes it privileged (a service account or ``client_credentials``, password grant, skipped
    consent, ...): adopted only when the operator says so."""
    protected: str | None = None
    """Why it can never be adopted (the gateway's own admin client, a provider built-in, a service account holding
    admin roles), else ``None``."""
    differences: tuple[SettingDifference, ...] = ()
    """Where its settings differ from a managed client's: adoption changes them unless told to keep them."""


class AdoptionRefused(AdapterError):
    """The client may never be adopted (see :attr:`UnmanagedClient.protected`)."""


@runtime_checkable
class ClientHygiene(Protocol):
    """Optional adapter capability behind ``dcr-gateway clients gc`` and ``adopt``."""

    async def usage(self, issuer: str, client_id: str) -> ClientUsage:
        """Usage of a managed client; :class:`ClientNotFound` when absent or not managed."""
        ...

    def list_unmanaged(self, issuer: str) -> AsyncIterator[UnmanagedClient]:
        """Every client of the issuer the gateway does not manage (adoption candidates)."""
        ...

    async def adopt_client(
        self, issuer: str, client_id: str, gateway_data: Mapping[str, Any], *, conform: bool = True
    ) -> ManagedClient:
        """Mark an unmanaged client as managed with the same marker :meth:`ProviderAdapter.create_client` sets,
        keeping its configuration and secret, and store ``gateway_data`` (e.g. a registration access token
        hash). With ``conform``, the settings in :attr:`UnmanagedClient.differences` are changed to what managed
        clients have. :class:`ClientNotFound` when absent, :class:`ClientConflict` when already managed,
        :class:`AdoptionRefused` when protected."""
        ...


UsagePage = list[tuple[ManagedClient, ClientUsage]]
"""One page of :meth:`UsageListing.list_with_usage`: managed clients with what the listing told of their use."""


@runtime_checkable
class UsageListing(Protocol):
    """Optional adapter capability: managed clients with their usage a provider page at a time, so that
    ``dcr-gateway clients list`` and ``gc`` make a number of admin calls that grows with pages, not with clients
    (issue 12), and hold one page at a time. Without it they list with :meth:`ProviderAdapter.list_clients` and
    ask :meth:`ClientHygiene.usage` per client."""

    def list_with_usage(self, issuer: str) -> AsyncIterator[UsagePage]:
        """Every managed DCR client of the issuer (as :meth:`ProviderAdapter.list_clients`: each once, no document
        client, never an unmanaged one), one list per provider page, each with its :class:`ClientUsage` read from
        that page (and, where the provider has one, from one realm-wide call per listing, e.g. Keycloak's
        ``client-session-stats``). A session count the listing could not read is ``None`` (unknown) even where
        :meth:`ClientHygiene.usage` can read it per client: ``gc`` asks ``usage`` before it judges such a client
        stale."""
        ...


@runtime_checkable
class ClientCount(Protocol):
    """Optional adapter capability behind the managed-client quota (``limits.max_clients_per_issuer``): how many
    managed clients (registered and made from metadata documents) the issuer holds, in one pass over the
    provider's listing, filtered on the managed marker by the provider where it can (issue 12). Without it the quota
    counts :meth:`ProviderAdapter.list_clients` and :meth:`DocumentClients.list_document_clients`."""

    async def count_managed(self, issuer: str) -> int:
        """Managed clients of ``issuer``, DCR and document clients together; :class:`AdapterError` when the
        provider cannot list them."""
        ...


# -------------------------------------------------------------------------------- provider version
# Which provider release the adapter drives, detected at start (issue 13): what differs between the supported
# versions is decided from this, in one place per adapter, and logged, not guessed per request.


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"26.7.3"``, ``"v2.3.0"``, ``"26.8.0-rc1"`` -> ``(26, 7, 3)``, ``(2, 3, 0)``, ``(26, 8, 0)``; ``()`` when it
    has no leading number (unknown, or not a release)."""
    if not version:
        return ()
    parts: list[int] = []
    for piece in version.strip().lstrip("vV").split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.end() != len(piece):
            break
    return tuple(parts)


@dataclass(frozen=True)
class ProviderVersion:
    """What an adapter learned at start about the provider it drives (``provider.detected`` in the log)."""

    provider: str
    version: str | None
    """As the provider reports it (``26.7.3``, ``v2.3.0``); ``None`` when it does not say (then every feature is
    taken from a probe, or assumed as for the oldest supported version)."""
    features: Mapping[str, bool] = field(default_factory=dict)
    """Differences between the supported versions that change what the adapter or the gateway does, by name,
    e.g. ``rfc8414_path_insertion`` (the provider serves the RFC 8414 section 3.1 path-inserted document itself)."""
    source: str = ""
    """How the version was read (``GET /admin/serverinfo``, ``GET /version``) or why it was not."""

    def at_least(self, *minimum: int) -> bool:
        """Whether the detected version is ``minimum`` or newer (``False`` when it is unknown)."""
        found = version_tuple(self.version)
        return bool(found) and found >= minimum


@runtime_checkable
class VersionDetection(Protocol):
    """Optional adapter capability: the provider's version and the version-dependent features, detected once after
    :meth:`ProviderAdapter.start` (the gateway logs them at start); later calls answer from what was detected."""

    async def detect_version(self) -> ProviderVersion:
        """Never raises for a provider that will not tell: the version is then ``None``, and ``source`` says why."""
        ...


# -------------------------------------------------------------------------------- registrable scopes
# What a registration through the gateway can obtain, so discovery advertises only that (RFC 8414 section 2
# ``scopes_supported``). Optional: an adapter without it puts no provider-side limit on scopes.


@runtime_checkable
class RegistrableScopes(Protocol):
    """Optional adapter capability: the scope values a client registered through the gateway can obtain.

    RFC 8414 section 2: ``scopes_supported`` lists the scope values the authorization server supports, and a
    server "MAY choose not to advertise some supported scope values". MCP clients authorize with the AS's
    ``scopes_supported`` when the resource names none, so the gateway advertises only what a registration
    can get (Keycloak: ``openid`` and the realm's default and default-optional client scopes).
    """

    async def registrable_scopes(self, issuer: str) -> frozenset[str] | None:
        """The scope values a managed client of ``issuer`` can be granted, or ``None`` when the provider does not
        limit them (Hydra registers any scope token). May use the provider's admin API (and its cache); raises
        :class:`AdapterError` when it cannot tell."""
        ...


# -------------------------------------------------------------------------------- MCP 2026-07-28 capabilities
# Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document), RFC 8707 resource indicators and
# RFC 8252 section 7.3 loopback redirects: optional protocols the front door uses on the authorization path.

DOCUMENT_SOURCE = "client_id_metadata_document"
"""``gateway_data["source"]`` of a client created from a client metadata document (provenance, with
``document_sha256`` and ``document_fetched_at``)."""


@runtime_checkable
class DocumentClients(Protocol):
    """Optional adapter capability: provider clients for Client ID Metadata Documents (CIMD).

    The client's id is the document's https URL. ``NewClient.client_id`` is that URL; the adapter stores the
    client under :meth:`stored_client_id` (the URL itself where the provider can address such an id in its admin
    API, Keycloak; a stable id derived from it where it cannot, Hydra v2, whose admin paths cannot carry ``/``),
    marks it managed (rule 1) and as coming from a document (``gateway_data``), and always answers with
    ``ManagedClient.client_id`` equal to the URL. A document client is never visible through ``read_client``,
    ``update_client`` or ``delete_client`` (the RFC 7592 endpoint), only through these methods.
    """

    def stored_client_id(self, issuer: str, url: str) -> str:
        """The id the provider knows the document's client by: what the front door sends the provider in place
        of ``url`` (``client_id`` of authorization, PAR, token and revocation requests). Pure, stable."""
        ...

    async def read_document_client(self, issuer: str, url: str) -> ManagedClient | None:
        """The managed document client for ``url``, or ``None`` when there is none (or only an unmanaged client
        with that id, which the gateway never touches)."""
        ...

    async def put_document_client(self, issuer: str, client: NewClient) -> ManagedClient:
        """Create the client for ``client.client_id`` (a URL) or replace an existing managed one in full
        (rule 5; ``client_secret`` is always ``None``: document clients use ``none`` or ``private_key_jwt``).
        :class:`ClientConflict` when an unmanaged client holds the id."""
        ...

    async def delete_document_client(self, issuer: str, url: str) -> None:
        """Remove the managed document client; :class:`ClientNotFound` when there is none."""
        ...

    def list_document_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        """Every managed document client of the issuer (``client_id`` the URL), and nothing else: what the
        managed-client quota counts besides :meth:`ProviderAdapter.list_clients`."""
        ...


@dataclass(frozen=True)
class ResourceBinding:
    """How an authorization or token request for one protected resource (RFC 8707) reaches the provider so the
    token's ``aud`` carries the resource: extra request parameters the front door adds."""

    scope: str | None = None
    """A scope value to add to ``scope`` (Keycloak: a client scope whose audience mapper adds the resource)."""
    audience: str | None = None
    """A value to add to the provider's own ``audience`` parameter (Hydra)."""


@runtime_checkable
class ResourceIndicators(Protocol):
    """Optional adapter capability: tokens whose ``aud`` names the RFC 8707 ``resource`` the client asked for.

    The gateway has already checked ``resource`` against the issuer's configured protected resources; the adapter
    only makes the provider able to issue the audience (idempotently, cached: it is called on every
    authorization) and says how the request must name it."""

    async def bind_resource(self, issuer: str, client_id: str, resource: str) -> ResourceBinding:
        """Prepare the provider so ``client_id`` (a stored id, see :meth:`DocumentClients.stored_client_id`) can
        obtain tokens for ``resource`` (Hydra: the resource in the client's ``audience`` list; Keycloak: a client
        scope with an audience mapper, optional on the client), and say what to add to the request. Only managed
        clients are changed; for an unmanaged one the binding is returned without a change (the provider may
        then refuse). :class:`ClientNotFound` when the client does not exist."""
        ...


@runtime_checkable
class LoopbackRedirects(Protocol):
    """Optional adapter capability: RFC 8252 section 7.3 (the authorization server MUST allow any port for
    loopback redirect URIs) where the provider does not (Hydra v2.3.0 ignores the port only for loopback IP
    literals; Keycloak 26.7 for ``localhost``, ``127.0.0.1`` and ``[::1]``, when the registered URI has no port;
    both measured by ``tests/integration/test_loopback_redirects.py``)."""

    def admits_any_port(self, redirect_uri: str) -> bool:
        """Whether the provider itself accepts, for a client registered with ``redirect_uri``, the same URI with
        any other port (so the front door need not call :meth:`admit_redirect_uri`). Pure."""
        ...

    async def admit_redirect_uri(self, issuer: str, client_id: str, redirect_uri: str) -> None:
        """Make the provider accept exactly ``redirect_uri`` (a registered loopback URI with the port the client
        uses now) for the managed client ``client_id`` (stored id): the URI is added to the client, and URIs
        added this way earlier are pruned (a bounded number kept). :class:`ClientNotFound` when absent or
        unmanaged."""
        ...


__all__ = [
    "CLIENT_ID_SYNTAX",
    "DEFAULT_DEPLOYMENT",
    "DEPLOYMENT_KEY",
    "DOCUMENT_SOURCE",
    "AdapterError",
    "AdapterFactory",
    "AdminApiCheck",
    "AdoptionRefused",
    "Capabilities",
    "ClientConflict",
    "ClientCount",
    "ClientHygiene",
    "ClientMetadata",
    "ClientNotFound",
    "ClientUsage",
    "CredentialsRefused",
    "DocumentClients",
    "Issuer",
    "IssuerMissing",
    "LoopbackRedirects",
    "ManagedClient",
    "NewClient",
    "ProviderAdapter",
    "ProviderAuthError",
    "ProviderMisconfigured",
    "ProviderRejected",
    "ProviderUnavailable",
    "RegistrableScopes",
    "ResourceBinding",
    "ResourceIndicators",
    "RoleMissing",
    "SettingDifference",
    "UnmanagedClient",
    "UsageListing",
    "UsagePage",
    "addressable_client_id",
    "deployment_of",
    "with_deployment",
]
"""Everything an adapter needs, from one module (README "Writing an adapter"): the contract, its errors and the
client metadata model it maps."""
