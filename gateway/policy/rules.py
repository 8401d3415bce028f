"""The registration policy: RFC 7591 section 2 defaults, the gateway's safe rules and the deployment's
configured policy, as one ordered table of small named functions (:data:`RULES`, node-oidc-provider style).

Each rule takes the metadata so far and the resolved :class:`RegistrationPolicy`; it returns ``None`` (the
metadata stands), returns new metadata (a default, a negotiated auth method, trimmed grant types or scopes, a
dropped URI: RFC 7591 section 3.2.1 lets the server replace requested values and the response shows what was
registered), or raises an RFC 7591 section 3.2.2 error whose description names the field, the value and what
is allowed. The same table runs on create and on every RFC 7592 update, so a rule cannot hold on one path and
not on the other. What the server accepts comes from the provider's discovery document intersected with the
deployment's settings, never from constants repeated elsewhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri
from gateway.oauth.fields import Kind, Limit
from gateway.oauth.lengths import StoredLength
from gateway.oauth.metadata import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    CLIENT_SECRET_BASIC,
    CLIENT_SECRET_POST,
    DEVICE_CODE,
    FIELDS,
    GRANT_TYPES,
    IMPLICIT,
    NONE,
    PASSWORD,
    PRIVATE_KEY_JWT,
    REFRESH_TOKEN,
    TOKEN_ENDPOINT_AUTH_METHODS,
    ClientMetadata,
)
from gateway.policy.settings import PolicySettings, SameHostMode, ScopeMode
from gateway.policy.uris import (
    DEFAULT_REDIRECT_RULES,
    FORBIDDEN_SCHEMES,
    RedirectRules,
    check_redirect_uri,
    check_web_uri,
    is_public_host,
    origin_key,
)

log = structlog.get_logger(__name__)

GATEWAY_GRANT_TYPES = GRANT_TYPES
GATEWAY_AUTH_METHODS = TOKEN_ENDPOINT_AUTH_METHODS
GATEWAY_RESPONSE_TYPES = frozenset({"code"})
"""RFC 9700 section 2.1.2: only the authorization code flow; implicit and hybrid response types never."""
FORBIDDEN_GRANT_TYPES = {
    PASSWORD: "RFC 9700 section 2.4",
    IMPLICIT: "RFC 9700 section 2.1.2",
}
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
"""RFC 7518 section 6: members that only private or symmetric keys carry."""
SAME_HOST_URIS = tuple(name for name, row in FIELDS.items() if row.kind is Kind.URI and row.shown_to_user)
"""RFC 7591 section 5: URIs shown to the user that SHOULD share host and scheme with the redirect URIs
(``client_uri``, ``logo_uri``, ``tos_uri``, ``policy_uri``: the table's ``shown_to_user`` URIs)."""
TEXT_FIELDS = tuple(name for name, row in FIELDS.items() if row.limit is Limit.TEXT)
"""Human-readable strings bounded by ``max_string_length`` (``client_name``, ``software_id``,
``software_version``: the table's ``Limit.TEXT`` rows)."""
NEGOTIABLE_AUTH_METHODS = (CLIENT_SECRET_BASIC, CLIENT_SECRET_POST)
"""Secret methods a client can be moved between (it reads the method back from the response, as the MCP SDKs
do), in order of preference."""

_CONTROL = re.compile(r"[\x00-\x1f]")
_WHITESPACE = re.compile(r"\s")  # str.isspace(), for str patterns
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 section 3.3 scope-token


@dataclass(frozen=True)
class RegistrationPolicy:
    """What this server accepts for one registration: the provider's metadata, the deployment's
    :class:`~gateway.policy.settings.PolicySettings` and the caller's privileges, resolved.

    The bare defaults are the gateway's fixed rules without deployment configuration (a permissive base for
    tests and benchmarks); the app builds its policy with :meth:`from_settings`.
    """

    grant_types: frozenset[str] = GATEWAY_GRANT_TYPES - {CLIENT_CREDENTIALS}
    token_endpoint_auth_methods: frozenset[str] = GATEWAY_AUTH_METHODS
    response_types: frozenset[str] = GATEWAY_RESPONSE_TYPES
    max_redirect_uris: int = 20
    max_uri_length: int = 2000
    max_string_length: int = 500
    max_contacts: int = 10
    max_jwks_keys: int = 10
    client_credentials_allowed: bool = False
    jwks_allowed: bool = True
    jwks_uri_allowed: bool = False
    """``jwks_uri`` makes the provider fetch a client-chosen URL: off for anonymous registration (send ``jwks``)."""
    authenticated: bool = False
    """The caller presented an initial access token or a software statement (only shapes error wording here:
    the privileges above are already resolved for the caller)."""
    redirect_rules: RedirectRules = DEFAULT_REDIRECT_RULES
    same_host: SameHostMode = SameHostMode.OFF
    trim_grant_types: bool = True
    negotiate_auth_method: bool = True
    allowed_scopes: frozenset[str] | None = None
    """``None``: no gateway allow-list."""
    scope_mode: ScopeMode = ScopeMode.LENIENT
    stored_lengths: Mapping[str, StoredLength] = field(default_factory=dict)
    """The provider's column sizes per field, in the unit its database counts (``Capabilities.stored_lengths``)."""
    message_template_fields: frozenset[str] = frozenset()
    """Fields the provider renders as message templates, where ``${`` is refused
    (``Capabilities.message_template_fields``)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(
        cls,
        settings: PolicySettings,
        server_metadata: Mapping[str, Any] | None,
        *,
        authenticated: bool = False,
        stored_lengths: Mapping[str, StoredLength] | None = None,
        message_template_fields: frozenset[str] = frozenset(),
    ) -> RegistrationPolicy:
        """Intersect the deployment's allow-lists with what the provider advertises (RFC 8414 section 2) and
        resolve the privileges for this caller; ``stored_lengths`` and ``message_template_fields`` are what the
        provider can store and how it renders (``Capabilities``)."""
        advertised = server_metadata or {}
        client_credentials_allowed = settings.client_credentials.allows(authenticated=authenticated)
        grant_types = set(settings.grant_types if settings.grant_types is not None else GATEWAY_GRANT_TYPES)
        if not client_credentials_allowed:
            grant_types.discard(CLIENT_CREDENTIALS)
        advertised_grants = _strings(advertised.get("grant_types_supported"))
        if advertised_grants is not None:
            grant_types &= advertised_grants
        auth_methods = set(
            settings.token_endpoint_auth_methods
            if settings.token_endpoint_auth_methods is not None
            else GATEWAY_AUTH_METHODS
        )
        advertised_methods = _strings(advertised.get("token_endpoint_auth_methods_supported"))
        if advertised_methods is not None:
            # "none" is a registration choice, not always listed by providers that accept public clients
            auth_methods &= advertised_methods | {NONE}
        response_types = set(GATEWAY_RESPONSE_TYPES)
        advertised_responses = _strings(advertised.get("response_types_supported"))
        if advertised_responses is not None:
            response_types &= advertised_responses
        scopes = settings.scopes
        allowed_scopes: set[str] | None = None
        if scopes.allowed is not None or scopes.include_advertised:
            allowed_scopes = set(scopes.allowed or ())
            if scopes.include_advertised:
                allowed_scopes |= _strings(advertised.get("scopes_supported")) or set()
        redirect = settings.redirect_uris
        return cls(
            grant_types=frozenset(grant_types),
            token_endpoint_auth_methods=frozenset(auth_methods),
            response_types=frozenset(response_types),
            max_redirect_uris=redirect.max_count,
            max_uri_length=settings.max_uri_length,
            max_string_length=settings.max_string_length,
            max_contacts=settings.max_contacts,
            max_jwks_keys=settings.max_jwks_keys,
            client_credentials_allowed=client_credentials_allowed,
            jwks_allowed=settings.jwks.allows(authenticated=authenticated),
            jwks_uri_allowed=settings.jwks_uri.allows(authenticated=authenticated),
            authenticated=authenticated,
            redirect_rules=RedirectRules(
                allowed_schemes=frozenset(redirect.allowed_schemes),
                denied_schemes=FORBIDDEN_SCHEMES | frozenset(redirect.denied_schemes),
                allowed_hosts=redirect.allowed_hosts,
                web_loopback=redirect.web_loopback,
            ),
            same_host=settings.same_host,
            trim_grant_types=settings.trim_grant_types,
            negotiate_auth_method=settings.negotiate_auth_method,
            allowed_scopes=frozenset(allowed_scopes) if allowed_scopes is not None else None,
            scope_mode=scopes.mode,
            stored_lengths=dict(stored_lengths or {}),
            message_template_fields=message_template_fields,
        )

    def refused(self) -> str:
        """Error wording for privileged metadata the caller may not register."""
        if self.authenticated:
            return "not allowed by this server's registration policy"
        return "not allowed for anonymous registration"


def _strings(value: Any) -> set[str] | None:
    if not isinstance(value, list):
        return None
    return {item for item in value if isinstance(item, str)}


# --------------------------------------------------------------------------------------------- rules

Rule = Callable[[ClientMetadata, RegistrationPolicy], ClientMetadata | None]
"""A named policy: ``None`` when the metadata stands, new metadata when it sets or trims a value, or an
RFC 7591 error."""


def apply_defaults(metadata: ClientMetadata) -> ClientMetadata:
    """RFC 7591 section 2 defaults: ``token_endpoint_auth_method`` ``client_secret_basic``,
    ``grant_types`` ``["authorization_code"]``, ``response_types`` ``["code"]``."""
    updates: dict[str, Any] = {}
    if metadata.token_endpoint_auth_method is None:
        updates["token_endpoint_auth_method"] = CLIENT_SECRET_BASIC
    if metadata.grant_types is None:
        updates["grant_types"] = [AUTHORIZATION_CODE]
    grant_types = updates.get("grant_types", metadata.grant_types) or []
    if metadata.response_types is None:
        updates["response_types"] = ["code"] if AUTHORIZATION_CODE in grant_types else []
    return metadata.model_copy(update=updates) if updates else metadata


def rfc7591_defaults(metadata: ClientMetadata, policy: RegistrationPolicy) -> ClientMetadata | None:
    """RFC 7591 section 2: the defaults of omitted fields (:func:`apply_defaults`)."""
    defaulted = apply_defaults(metadata)
    return defaulted if defaulted is not metadata else None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def text_is_unicode(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Every string is Unicode text. A JSON string can carry a lone UTF-16 surrogate (``"\\ud83d"``, RFC 8259
    section 8.2), which is no character: no UTF-8 column stores it (Hydra would keep U+FFFD instead), so what the
    response echoed would not be what the provider holds."""
    registered = metadata.registered()
    try:
        # one pass in C over every string, keys included: strict UTF-8 cannot encode a surrogate code point
        json.dumps(registered, ensure_ascii=False).encode("utf-8")
    except (ValueError, TypeError):  # UnicodeEncodeError is a ValueError; anything odd: the exact scan below
        pass
    else:
        return
    for field_name, value in _strings_of(registered):
        if _LONE_SURROGATE.search(value):
            error = InvalidRedirectUri if field_name.startswith("redirect_uris") else InvalidClientMetadata
            raise error(f"{field_name}: not valid Unicode (a lone UTF-16 surrogate)")


def _strings_of(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings_of(key, path or "metadata")
            yield from _strings_of(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings_of(item, f"{path}[{index}]")


def redirect_uris_present(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """RFC 7591 section 2: redirection-based flows need ``redirect_uris``; the gateway requires them, up to
    the configured number and without duplicates."""
    grant_types = metadata.grant_types or []
    if (AUTHORIZATION_CODE in grant_types or metadata.response_types) and not metadata.redirect_uris:
        raise InvalidRedirectUri("redirect_uris: at least one redirection URI is required")
    if metadata.redirect_uris and len(metadata.redirect_uris) > policy.max_redirect_uris:
        raise InvalidRedirectUri(f"redirect_uris: at most {policy.max_redirect_uris} URIs are allowed")
    if metadata.redirect_uris and len(set(metadata.redirect_uris)) != len(metadata.redirect_uris):
        raise InvalidRedirectUri("redirect_uris: contains duplicates")


def redirect_uris_safe(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Each redirect URI passes :func:`~gateway.policy.uris.check_redirect_uri` for the client's
    ``application_type`` and the deployment's scheme and host allow-lists (RFC 8252, RFC 9700 section 4.1)."""
    for index, uri in enumerate(metadata.redirect_uris or []):
        check_redirect_uri(
            uri,
            field_name=f"redirect_uris[{index}]",
            application_type=metadata.application_type,
            max_length=policy.max_uri_length,
            rules=policy.redirect_rules,
        )


def post_logout_redirect_uris_safe(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """OpenID RP-Initiated Logout section 3.1: the same rules as redirect URIs."""
    uris = metadata.post_logout_redirect_uris or []
    if len(uris) > policy.max_redirect_uris:
        raise InvalidClientMetadata(f"post_logout_redirect_uris: at most {policy.max_redirect_uris} URIs are allowed")
    for index, uri in enumerate(uris):
        check_redirect_uri(
            uri,
            field_name=f"post_logout_redirect_uris[{index}]",
            application_type=metadata.application_type,
            max_length=policy.max_uri_length,
            rules=policy.redirect_rules,
            error=InvalidClientMetadata,
        )


def response_types_allowed(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Only ``code`` (RFC 9700 section 2.1.2: the implicit grant and hybrid response types are not used), and
    only if the provider advertises it (RFC 8414 ``response_types_supported``)."""
    for value in metadata.response_types or []:
        if value not in GATEWAY_RESPONSE_TYPES:
            raise InvalidClientMetadata(
                f"response_types: {value!r} is not allowed (implicit and hybrid flows are disabled); allowed: ['code']"
            )
        if value not in policy.response_types:
            raise InvalidClientMetadata(f"response_types: {value!r} is not supported by the authorization server")
    if metadata.response_types is not None and len(set(metadata.response_types)) != len(metadata.response_types):
        raise InvalidClientMetadata("response_types: contains duplicates")


def grant_types_allowed(metadata: ClientMetadata, policy: RegistrationPolicy) -> ClientMetadata | None:
    """``grant_types`` within the allow-list. ``implicit`` and ``password`` are refused (RFC 9700 sections
    2.1.2, 2.4), and so is ``client_credentials`` unless the caller is privileged: a client asking for them
    must learn it will not get them. Other unsupported grant types (VS Code's device grant on a provider
    without it) are trimmed when :attr:`RegistrationPolicy.trim_grant_types`, as long as one remains."""
    requested = metadata.grant_types or []
    if len(set(requested)) != len(requested):
        raise InvalidClientMetadata("grant_types: contains duplicates")
    allowed = sorted(policy.grant_types)
    unsupported: list[str] = []
    for value in requested:
        if value in FORBIDDEN_GRANT_TYPES:
            raise InvalidClientMetadata(
                f"grant_types: {value!r} is not allowed ({FORBIDDEN_GRANT_TYPES[value]}); allowed: {allowed}"
            )
        if value == CLIENT_CREDENTIALS and not policy.client_credentials_allowed:
            raise InvalidClientMetadata(f"grant_types: 'client_credentials' is {policy.refused()}; allowed: {allowed}")
        if value not in policy.grant_types:
            unsupported.append(value)
    if not unsupported:
        return None
    kept = [value for value in requested if value not in unsupported]
    if not policy.trim_grant_types or not kept:
        raise InvalidClientMetadata(f"grant_types: {unsupported[0]!r} is not supported; allowed: {allowed}")
    return metadata.model_copy(update={"grant_types": kept})


def grant_and_response_types_agree(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """RFC 7591 section 2.1: ``code`` goes with ``authorization_code`` and the reverse."""
    grant_types = metadata.grant_types or []
    response_types = metadata.response_types or []
    if "code" in response_types and AUTHORIZATION_CODE not in grant_types:
        raise InvalidClientMetadata(
            "grant_types: must include 'authorization_code' when response_types includes 'code' (RFC 7591 section 2.1)"
        )
    if AUTHORIZATION_CODE in grant_types and "code" not in response_types:
        raise InvalidClientMetadata(
            "response_types: must include 'code' when grant_types includes 'authorization_code' (RFC 7591 section 2.1)"
        )
    if REFRESH_TOKEN in grant_types and not ({AUTHORIZATION_CODE, DEVICE_CODE} & set(grant_types)):
        raise InvalidClientMetadata(
            "grant_types: 'refresh_token' needs a grant that issues refresh tokens ('authorization_code')"
        )


def token_endpoint_auth_method_negotiated(
    metadata: ClientMetadata, policy: RegistrationPolicy
) -> ClientMetadata | None:
    """``token_endpoint_auth_method`` within the allow-list (RFC 7591 section 2). A secret method that is not
    allowed is answered with one that is (the other secret method, else ``none``: a public-only deployment
    registers the Python SDK's default body as a public client), and the response says so (RFC 7591 section
    3.2.1: the server MAY replace a requested value). ``none`` never becomes a secret method, and key-based
    methods are never swapped: those clients hold no secret to use."""
    method = metadata.token_endpoint_auth_method
    allowed = policy.token_endpoint_auth_methods
    chosen = method
    if method is not None and method not in allowed:
        candidates = [m for m in (*NEGOTIABLE_AUTH_METHODS, NONE) if m in allowed]
        if not policy.negotiate_auth_method or method not in NEGOTIABLE_AUTH_METHODS or not candidates:
            raise InvalidClientMetadata(
                f"token_endpoint_auth_method: {method!r} is not supported; allowed: {sorted(allowed)}"
            )
        chosen = candidates[0]
    if chosen == NONE and CLIENT_CREDENTIALS in (metadata.grant_types or []):
        raise InvalidClientMetadata(
            "grant_types: 'client_credentials' needs a confidential client, not token_endpoint_auth_method 'none'"
        )
    return metadata.model_copy(update={"token_endpoint_auth_method": chosen}) if chosen != method else None


def keys_allowed(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """RFC 7591 section 2: ``jwks`` and ``jwks_uri`` MUST NOT both be present; each only for callers the policy
    privileges (``jwks_uri`` makes the provider fetch a client-chosen URL); ``private_key_jwt`` needs one."""
    if metadata.jwks is not None and metadata.jwks_uri is not None:
        raise InvalidClientMetadata("jwks, jwks_uri: only one of them may be present (RFC 7591 section 2)")
    if metadata.jwks is not None and not policy.jwks_allowed:
        raise InvalidClientMetadata(f"jwks: {policy.refused()}")
    if metadata.jwks_uri is not None and not policy.jwks_uri_allowed:
        raise InvalidClientMetadata(
            f"jwks_uri: {policy.refused()} (the provider would fetch it)"
            + ("; send the public keys as jwks instead" if policy.jwks_allowed else "")
        )
    if metadata.token_endpoint_auth_method == PRIVATE_KEY_JWT and metadata.jwks is None and not metadata.jwks_uri:
        raise InvalidClientMetadata("token_endpoint_auth_method: 'private_key_jwt' needs jwks or jwks_uri")


def jwks_usable(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """A JWK Set (RFC 7517 section 5) of public, asymmetric signing keys only: private and symmetric key
    material is refused, every key must be usable (:func:`check_public_jwk`)."""
    if metadata.jwks is None:
        return
    keys = metadata.jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        raise InvalidClientMetadata("jwks: must be a JWK Set with a non-empty 'keys' array (RFC 7517 section 5)")
    if len(keys) > policy.max_jwks_keys:
        raise InvalidClientMetadata(f"jwks: at most {policy.max_jwks_keys} keys are allowed")
    for index, key in enumerate(keys):
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            raise InvalidClientMetadata(f"jwks.keys[{index}]: must be a JWK with a 'kty' (RFC 7517 section 4.1)")
        if key["kty"] == "oct" or "k" in key:
            raise InvalidClientMetadata(f"jwks.keys[{index}]: symmetric keys are not allowed")
        private = sorted(PRIVATE_JWK_MEMBERS & set(key))
        if private:
            raise InvalidClientMetadata(
                f"jwks.keys[{index}]: private key material {private} is not allowed; send public keys only"
            )
        check_public_jwk(key, f"jwks.keys[{index}]")


_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
JWK_REQUIRED = {
    "RSA": ("n", "e"),
    "EC": ("crv", "x", "y"),
    "OKP": ("crv", "x"),
}
"""RFC 7518 section 6.2.1 / 6.3.1, RFC 8037 section 2: members a usable public key must carry."""
JWK_CURVES = {"EC": frozenset({"P-256", "P-384", "P-521"}), "OKP": frozenset({"Ed25519", "Ed448"})}


def check_public_jwk(key: Mapping[str, Any], where: str) -> None:
    """A public JWK a provider can verify signatures with: known ``kty``, its required members present as
    base64url strings, a known curve (RFC 7517 section 4, RFC 7518 section 6, RFC 8037 section 2)."""
    kty = key["kty"]
    if kty not in JWK_REQUIRED:
        raise InvalidClientMetadata(f"{where}: kty {kty!r} is not supported; allowed: {sorted(JWK_REQUIRED)}")
    for member in JWK_REQUIRED[kty]:
        value = key.get(member)
        if not isinstance(value, str) or not value:
            raise InvalidClientMetadata(f"{where}: a {kty} key needs {member!r} (RFC 7518 section 6)")
        if member != "crv" and not _B64URL.match(value):
            raise InvalidClientMetadata(f"{where}: {member!r} must be base64url without padding")
    if kty in JWK_CURVES and key["crv"] not in JWK_CURVES[kty]:
        raise InvalidClientMetadata(
            f"{where}: curve {key['crv']!r} is not supported; allowed: {sorted(JWK_CURVES[kty])}"
        )
    for member in ("use", "alg", "kid"):
        if member in key and not isinstance(key[member], str):
            raise InvalidClientMetadata(f"{where}: {member!r} must be a string")
    if key.get("use", "sig") != "sig":
        raise InvalidClientMetadata(f"{where}: 'use' must be 'sig' for client authentication keys")


def web_uris_valid(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """``client_uri``, ``logo_uri``, ``tos_uri``, ``policy_uri`` are web URLs; ``jwks_uri`` an https URL on a
    public host (the literal is checked here; names after resolution, :mod:`gateway.policy.network`)."""
    for name in SAME_HOST_URIS:
        value = getattr(metadata, name)
        if value is not None:
            check_web_uri(value, field_name=name, max_length=policy.max_uri_length)
    if metadata.jwks_uri is not None:
        check_web_uri(metadata.jwks_uri, field_name="jwks_uri", max_length=policy.max_uri_length, https_only=True)
        host = metadata_host(metadata.jwks_uri)
        if not is_public_host(host):
            raise InvalidClientMetadata(
                f"jwks_uri {metadata.jwks_uri!r}: must name a public host, not a loopback, private or link-local one"
            )


def metadata_host(uri: str) -> str:
    key = origin_key(uri)
    return key[1] if key else ""


def metadata_uris_same_host(metadata: ClientMetadata, policy: RegistrationPolicy) -> ClientMetadata | None:
    """RFC 7591 section 5: ``logo_uri``, ``tos_uri``, ``client_uri`` and ``policy_uri`` SHOULD have the same host
    and scheme as a redirect URI, since users see them and nobody vouches for them. ``drop``: registered without
    the mismatching ones; ``reject``: refused naming the field; ``off``: kept."""
    if policy.same_host is SameHostMode.OFF or all(getattr(metadata, name) is None for name in SAME_HOST_URIS):
        return None
    origins = {key for uri in metadata.redirect_uris or [] if (key := origin_key(uri)) is not None}
    mismatched: dict[str, Any] = {}
    for name in SAME_HOST_URIS:
        value = getattr(metadata, name)
        if value is None or origin_key(value) in origins:
            continue
        if policy.same_host is SameHostMode.REJECT:
            host = metadata_host(value)
            raise InvalidClientMetadata(
                f"{name} {value!r}: host {host!r} is not the scheme and host of a redirect URI (RFC 7591 section 5)"
            )
        mismatched[name] = None
    return metadata.model_copy(update=mismatched) if mismatched else None


def strings_bounded(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Human-readable strings have a sane size (at most what the provider stores); ``contacts`` is a short list
    of addresses."""
    for name in TEXT_FIELDS:
        value = getattr(metadata, name)
        if value is not None and (len(value) > policy.max_string_length or not value.strip()):
            raise InvalidClientMetadata(f"{name}: must be 1 to {policy.max_string_length} characters")
        if value is not None and _CONTROL.search(value):
            raise InvalidClientMetadata(f"{name}: must not contain control characters")
    contacts = metadata.contacts or []
    if len(contacts) > policy.max_contacts:
        raise InvalidClientMetadata(f"contacts: at most {policy.max_contacts} entries are allowed")
    for index, contact in enumerate(contacts):
        if not contact or len(contact) > 320 or _WHITESPACE.search(contact):
            raise InvalidClientMetadata(f"contacts[{index}]: must be an e-mail address")


def stored_lengths_fit(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Every value fits the provider column it lands in, measured in that column's unit
    (:mod:`gateway.oauth.lengths`: H2 and SQL Server count UTF-16 code units, byte-semantics columns count
    UTF-8 bytes). RFC 7591 section 3.2.2: a value the server cannot store is ``invalid_client_metadata``
    (``invalid_redirect_uri`` for a redirection URI), answered before anything is created, never a provider
    failure."""
    for name, limit in policy.stored_lengths.items():
        value = getattr(metadata, name, None)
        values = [(name, value)] if isinstance(value, str) else []
        if isinstance(value, list):
            values = [(f"{name}[{index}]", item) for index, item in enumerate(value) if isinstance(item, str)]
        for field_name, item in values:
            length = limit.excess(item)
            if length is not None:
                error = InvalidRedirectUri if name == "redirect_uris" else InvalidClientMetadata
                raise error(limit.refusal(field_name, length))


MESSAGE_TEMPLATE_MARKER = "${"


def display_text_literal(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Text the user is shown (RFC 7591 section 2: ``client_name`` is "presented to the end-user during
    authorization") is shown as sent: on a provider whose pages resolve ``${key}`` in it to its own messages
    (Keycloak's consent page would say ``${loginAccountTitle}`` in the realm's words), ``${`` is refused."""
    for name in sorted(policy.message_template_fields):
        value = getattr(metadata, name, None)
        if isinstance(value, str) and MESSAGE_TEMPLATE_MARKER in value:
            raise InvalidClientMetadata(
                f"{name} {value!r}: must not contain '${{': the authorization server would show one of its own "
                "messages in its place"
            )


def scope_syntax(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """RFC 7591 section 2 and RFC 6749 section 3.3: space-separated scope tokens."""
    if metadata.scope is None:
        return
    if len(metadata.scope) > policy.max_uri_length:
        raise InvalidClientMetadata(f"scope: longer than {policy.max_uri_length} characters")
    for token in metadata.scope.split(" "):
        if not token or not _SCOPE_TOKEN.match(token):
            raise InvalidClientMetadata(
                f"scope {metadata.scope!r}: must be space-separated scope tokens (RFC 6749 section 3.3)"
            )


OPENID_SCOPE = "openid"


def scopes_allowed(metadata: ClientMetadata, policy: RegistrationPolicy) -> ClientMetadata | None:
    """The scope allow-list: ``strict`` refuses naming the unknown tokens; ``lenient`` drops them, and drops
    ``scope`` entirely when nothing remains, so the provider's default scopes apply (RFC 7591 section 2: the
    server MAY register a different scope than requested, and the response says which)."""
    if metadata.scope is None or policy.allowed_scopes is None:
        return None
    requested = metadata.scope.split(" ")
    # `openid` is OpenID Connect's request marker, not a resource scope: an allow-list never withholds it, so the
    # discovery document (which keeps it) and registration agree.
    allowed = policy.allowed_scopes | {OPENID_SCOPE}
    unknown = [token for token in requested if token not in allowed]
    if not unknown:
        return None
    if policy.scope_mode is ScopeMode.STRICT:
        names = ", ".join(repr(token) for token in dict.fromkeys(unknown))
        raise InvalidClientMetadata(
            f"scope {metadata.scope!r}: {names} {'is' if len(set(unknown)) == 1 else 'are'} not allowed; "
            f"allowed: {sorted(policy.allowed_scopes)}"
        )
    kept = [token for token in requested if token in allowed]
    return metadata.model_copy(update={"scope": " ".join(kept) or None})


RULES: Sequence[Rule] = (
    rfc7591_defaults,
    text_is_unicode,
    redirect_uris_present,
    redirect_uris_safe,
    post_logout_redirect_uris_safe,
    response_types_allowed,
    grant_types_allowed,
    grant_and_response_types_agree,
    token_endpoint_auth_method_negotiated,
    keys_allowed,
    jwks_usable,
    web_uris_valid,
    metadata_uris_same_host,
    strings_bounded,
    display_text_literal,
    stored_lengths_fit,
    scope_syntax,
    scopes_allowed,
)
"""The registration policy, in order: each rule sees what the ones before it registered."""


def validate(metadata: ClientMetadata, policy: RegistrationPolicy, rules: Iterable[Rule] = RULES) -> ClientMetadata:
    """Run every rule in order; returns the metadata to register. The names of rules that changed something
    are logged (never the values: they are client-chosen)."""
    changed: list[str] = []
    for rule in rules:
        result = rule(metadata, policy)
        if result is not None and result != metadata:
            metadata = result
            if rule is not rfc7591_defaults:
                changed.append(rule.__name__)
    if changed:
        log.info("registration.policy_applied", policies=changed)
    return metadata
