"""The declarative configuration of the registration policy engine (``[policy]`` in TOML, ``DCR_POLICY__*``).

Every knob has a documented default tuned for MCP clients: every registration body in the MCP client
reference (Claude, Claude Code, VS Code, Cursor, MCP Inspector, mcp-remote, the SDKs) registers with the
defaults. Values are checked at start-up, so a typo stops the gateway instead of silently weakening a rule.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.oauth.metadata import GRANT_TYPES, TOKEN_ENDPOINT_AUTH_METHODS
from gateway.policy.uris import FORBIDDEN_SCHEMES, SCHEME_SYNTAX, normalize_host


class Privilege(StrEnum):
    """Who may register a piece of privileged metadata (RFC 7591 section 3: initial access tokens and software
    statements authenticate a registration; :attr:`gateway.rfc7591.handler.Caller.authenticated`)."""

    NEVER = "never"
    AUTHENTICATED = "authenticated"
    """Only registrations that presented a verified initial access token or software statement."""
    ANYONE = "anyone"
    """Anonymous registrations too (the MCP default for open registration is to keep privileges off)."""

    def allows(self, *, authenticated: bool) -> bool:
        return self is Privilege.ANYONE or (self is Privilege.AUTHENTICATED and authenticated)


class SameHostMode(StrEnum):
    """RFC 7591 section 5: ``logo_uri``, ``tos_uri``, ``client_uri`` and ``policy_uri`` SHOULD have the same
    host and scheme as the redirect URIs, since they are shown to users and are self-asserted."""

    OFF = "off"
    """Keep them as registered (after the web-URL checks)."""
    DROP = "drop"
    """Register without the mismatching ones (the response shows they are gone); the default."""
    REJECT = "reject"
    """``invalid_client_metadata`` naming the field and its host."""


class ScopeMode(StrEnum):
    """What happens to scope tokens outside :attr:`ScopeSettings.allowed`."""

    LENIENT = "lenient"
    """Drop them (the response echoes the scopes registered); the default."""
    STRICT = "strict"
    """``invalid_client_metadata`` naming them."""


class RedirectUriSettings(BaseModel):
    """Redirect URI rules on top of the fixed safe ones (RFC 6749 section 3.1.2, RFC 8252, RFC 9700 4.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_count: int = Field(default=20, ge=1, le=200)
    """Most redirect URIs (and post-logout redirect URIs) one client may register."""
    allowed_schemes: tuple[str, ...] = ()
    """If not empty, the only schemes a redirect URI may use (e.g. ``["https"]``; add ``"http"`` for loopback
    and private-use schemes such as ``"cursor"`` explicitly). Empty: any scheme outside the deny-list."""
    denied_schemes: tuple[str, ...] = ()
    """Private-use schemes refused on top of the built-in deny-list (script, local, browser-internal and
    non-http network schemes, which are always refused)."""
    allowed_hosts: tuple[str, ...] = ()
    """If not empty, every ``http``/``https`` redirect host must be an entry or a subdomain of one (hosts are
    compared after case and IDNA normalisation; IP literals match exactly). Loopback hosts are hosts too:
    list ``127.0.0.1``, ``::1``, ``localhost`` to keep native clients working. Empty: any host."""
    web_loopback: bool = False
    """Whether ``application_type: web`` clients may register loopback ``http`` redirects. Hosted web clients
    (claude.ai) use https; native and unspecified clients always may (RFC 8252 section 7.3)."""

    @field_validator("allowed_schemes", "denied_schemes")
    @classmethod
    def _schemes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        schemes = tuple(s.lower() for s in value)
        for scheme in schemes:
            if not SCHEME_SYNTAX.match(scheme):
                raise ValueError(f"{scheme!r} is not a URI scheme (RFC 3986 section 3.1)")
        return schemes

    @field_validator("allowed_schemes")
    @classmethod
    def _never_forbidden(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        forbidden = sorted(set(value) & FORBIDDEN_SCHEMES)
        if forbidden:
            raise ValueError(f"{forbidden} can never be redirect URI schemes")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        hosts: list[str] = []
        for entry in value:
            if any(c in entry for c in "*/@ \\"):
                raise ValueError(f"{entry!r}: an allowed host is a host name or IP literal, without wildcards")
            try:
                hosts.append(normalize_host(entry.removeprefix(".")))
            except ValueError as exc:
                raise ValueError(f"{entry!r}: {exc}") from None
        return tuple(hosts)


class ScopeSettings(BaseModel):
    """Scope allow-list (Keycloak's "Allowed Client Scopes" policy). The provider's default scopes are never
    lost: a registration whose scopes are all dropped registers none, so the provider's defaults apply, and
    the Keycloak adapter keeps the realm's default scopes on a registration that names scopes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: tuple[str, ...] | None = None
    """Scope tokens a client may register. ``None``: no gateway allow-list (Keycloak attaches only the realm's
    default and default-optional scopes anyway; Hydra takes any token: set this in front of Hydra)."""
    include_advertised: bool = False
    """Also allow the provider's advertised ``scopes_supported`` (RFC 8414 section 2)."""
    mode: ScopeMode = ScopeMode.LENIENT


class PolicySettings(BaseModel):
    """The registration policy: which metadata is accepted, negotiated, trimmed or refused (RFC 7591 section 2,
    section 5), on create and on every RFC 7592 update."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redirect_uris: RedirectUriSettings = Field(default_factory=RedirectUriSettings)
    same_host: SameHostMode = SameHostMode.DROP
    """RFC 7591 section 5 check of ``logo_uri``, ``tos_uri``, ``client_uri``, ``policy_uri``. ``drop`` keeps MCP
    Inspector working (its ``client_uri`` is on github.com, its redirects on localhost) without registering a
    self-asserted link on another host for the consent screen."""
    grant_types: tuple[str, ...] | None = None
    """Grant types clients may register; ``None``: all the gateway supports (``authorization_code``,
    ``refresh_token``, the device grant; ``client_credentials`` per :attr:`client_credentials`), always
    intersected with the provider's ``grant_types_supported``."""
    trim_grant_types: bool = True
    """Unsupported grant types are removed (VS Code lists the device grant) instead of refused, as long as a
    usable one remains; forbidden (``implicit``, ``password``) and privileged ones are always refused."""
    token_endpoint_auth_methods: tuple[str, ...] | None = None
    """Token endpoint auth methods clients may register; ``None``: all the gateway supports, intersected with the
    provider's ``token_endpoint_auth_methods_supported``. ``["none"]`` makes a public-clients-only deployment."""
    negotiate_auth_method: bool = True
    """A requested (or, when omitted, the RFC default ``client_secret_basic``) secret method that is not allowed
    is answered with an allowed one: the other secret method, else ``none``; the response says which. Key-based
    methods and ``none`` are never swapped (a public client must not receive a secret)."""
    scopes: ScopeSettings = Field(default_factory=ScopeSettings)
    client_credentials: Privilege = Privilege.NEVER
    """Who may register the ``client_credentials`` grant (on Keycloak it enables a service account)."""
    jwks: Privilege = Privilege.AUTHENTICATED
    """Who may register inline public keys (``jwks``, for ``private_key_jwt``)."""
    jwks_uri: Privilege = Privilege.NEVER
    """Who may register ``jwks_uri``: the provider fetches it, so besides https it must resolve to public
    addresses only (checked at registration; an egress firewall is the real guard against DNS rebinding)."""
    max_uri_length: int = Field(default=2000, ge=64)
    """Longest URI accepted, in characters; the provider's columns add their own limits, counted in their own unit
    (``Capabilities.stored_lengths``; Keycloak: 255 bytes of UTF-8 for ``client_uri`` and redirect URIs)."""
    max_string_length: int = Field(default=500, ge=16)
    """Longest ``client_name``, ``software_id``, ``software_version``, in characters; the provider's columns add
    their own limits (Keycloak: ``client_name`` 255 UTF-16 code units)."""
    max_contacts: int = Field(default=10, ge=0)
    max_jwks_keys: int = Field(default=10, ge=1)

    @field_validator("grant_types")
    @classmethod
    def _known_grant_types(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(value or ()) - GRANT_TYPES)
        if unknown:
            raise ValueError(f"{unknown} are not grant types the gateway registers; known: {sorted(GRANT_TYPES)}")
        return value

    @field_validator("token_endpoint_auth_methods")
    @classmethod
    def _known_auth_methods(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and not value:
            raise ValueError("at least one token endpoint auth method must be allowed")
        unknown = sorted(set(value or ()) - TOKEN_ENDPOINT_AUTH_METHODS)
        if unknown:
            raise ValueError(f"{unknown} are not auth methods the gateway registers; known: "
                             f"{sorted(TOKEN_ENDPOINT_AUTH_METHODS)}")  # fmt: skip
        return value


__all__ = [
    "PolicySettings",
    "Privilege",
    "RedirectUriSettings",
    "SameHostMode",
    "ScopeMode",
    "ScopeSettings",
]
