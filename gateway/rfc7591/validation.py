"""What a registration must satisfy before it reaches a provider: RFC 7591 section 2 defaults and the
gateway's safe defaults (RFC 8252, RFC 9700 section 4.1, OpenID Registration section 2).

Rules are small named functions run in a fixed order (:data:`RULES`); each raises an RFC 7591 error whose
description names the field, the offending value and what is allowed. What the server accepts comes from
the provider's own discovery document (``grant_types_supported``, ``token_endpoint_auth_methods_supported``,
...) intersected with what the gateway allows, never from constants repeated elsewhere.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from pydantic import ValidationError

from gateway.rfc7591.errors import InvalidClientMetadata, InvalidRedirectUri, OAuthError
from gateway.rfc7591.models import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    CLIENT_SECRET_BASIC,
    DEVICE_CODE,
    GRANT_TYPES,
    IMPLICIT,
    NONE,
    PASSWORD,
    PRIVATE_KEY_JWT,
    REFRESH_TOKEN,
    TOKEN_ENDPOINT_AUTH_METHODS,
    ClientMetadata,
)

FORBIDDEN_SCHEMES = frozenset(
    {
        # script-capable or local (node-oidc-provider, OAuth 2.0 Security BCP)
        "javascript", "data", "file", "vbscript", "about", "blob",
        # browser-internal
        "view-source", "filesystem", "jar", "chrome", "chrome-extension", "moz-extension", "resource", "edge",
        # network schemes that are not http(s): cleartext or not a redirect target at all
        "ws", "wss", "ftp", "ftps", "sftp", "gopher", "ldap", "ldaps", "smb", "ssh", "telnet", "news", "nntp",
        "irc", "git", "svn", "feed", "mailto", "tel", "sms", "urn", "intent", "content",
    }
)  # fmt: skip
"""Schemes that are never a redirect target. Any other scheme is a private-use scheme (RFC 8252 section 7.1),
accepted for clients that do not register as ``web``."""

GATEWAY_GRANT_TYPES = GRANT_TYPES
GATEWAY_AUTH_METHODS = TOKEN_ENDPOINT_AUTH_METHODS
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
"""RFC 7518 section 6: members that only private or symmetric keys carry."""

_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 section 3.3 scope-token
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*$")  # RFC 3986 section 3.1


@dataclass(frozen=True)
class RegistrationPolicy:
    """What this server accepts, derived from the provider's metadata and the gateway's settings."""

    grant_types: frozenset[str] = GATEWAY_GRANT_TYPES - {CLIENT_CREDENTIALS}
    token_endpoint_auth_methods: frozenset[str] = GATEWAY_AUTH_METHODS
    max_redirect_uris: int = 20
    max_uri_length: int = 2000
    max_string_length: int = 500
    max_contacts: int = 10
    max_jwks_keys: int = 10
    client_credentials_allowed: bool = False
    jwks_uri_allowed: bool = False
    """``jwks_uri`` makes the provider fetch a client-chosen URL: off for anonymous registration (send ``jwks``)."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_server_metadata(
        cls,
        metadata: Mapping[str, Any] | None,
        *,
        client_credentials_allowed: bool = False,
        jwks_uri_allowed: bool = False,
        max_uri_length: int = 2000,
        max_string_length: int = 500,
    ) -> RegistrationPolicy:
        """Intersect the gateway's allow-lists with what the provider advertises (RFC 8414 section 2)."""
        grant_types = set(GATEWAY_GRANT_TYPES)
        if not client_credentials_allowed:
            grant_types.discard(CLIENT_CREDENTIALS)
        auth_methods = set(GATEWAY_AUTH_METHODS)
        if metadata:
            advertised_grants = metadata.get("grant_types_supported")
            if isinstance(advertised_grants, list):
                grant_types &= {g for g in advertised_grants if isinstance(g, str)}
            advertised_methods = metadata.get("token_endpoint_auth_methods_supported")
            if isinstance(advertised_methods, list):
                # "none" is a registration choice, not always listed by providers that accept public clients
                auth_methods &= {m for m in advertised_methods if isinstance(m, str)} | {NONE}
        return cls(
            grant_types=frozenset(grant_types),
            token_endpoint_auth_methods=frozenset(auth_methods),
            client_credentials_allowed=client_credentials_allowed,
            jwks_uri_allowed=jwks_uri_allowed,
            max_uri_length=max_uri_length,
            max_string_length=max_string_length,
        )


def parse_metadata(document: Mapping[str, Any]) -> ClientMetadata:
    """Turn a JSON object into :class:`ClientMetadata`, mapping shape errors to RFC 7591 errors."""
    try:
        return ClientMetadata.model_validate(dict(document))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        name = str(loc[0]) if loc else "body"
        where = name + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
        expected = _expected_shape(name)
        error_class: type[OAuthError] = InvalidRedirectUri if name == "redirect_uris" else InvalidClientMetadata
        raise error_class(f"{where}: must be {expected}") from None


def _expected_shape(name: str) -> str:
    annotation = ClientMetadata.model_fields[name].annotation if name in ClientMetadata.model_fields else None
    text = str(annotation)
    if "list[str]" in text:
        return "an array of strings"
    if "dict" in text:
        return "a JSON object"
    if "Literal" in text:
        return "one of 'web', 'native'"
    return "a string"


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


# ---------------------------------------------------------------------------------------------- URIs


def is_loopback_host(host: str) -> bool:
    """``localhost`` or an IP literal in 127.0.0.0/8 or ``::1`` (RFC 8252 sections 7.3 and 8.3)."""
    if host == "localhost":
        return True
    return is_loopback_ip(host)


def is_loopback_ip(host: str) -> bool:
    """An IP literal in 127.0.0.0/8 or ``::1``: any port must be accepted (RFC 8252 section 7.3)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_public_host(host: str) -> bool:
    """False for ``localhost`` names and for IP literals that are not global (RFC 6890 special-purpose ranges:
    loopback, private, link-local, unique-local, ...). Names are checked again after DNS resolution by whoever
    fetches (a later issue); a literal can be refused here."""
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith((".localhost", ".local", ".internal")):
        return False
    try:
        return ipaddress.ip_address(lowered.strip("[]")).is_global
    except ValueError:
        return "." in lowered  # a dotless name resolves in a local search domain


def _split(uri: str, field_name: str, error: type[OAuthError]) -> SplitResult:
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises on a non-numeric port
    except ValueError:
        raise error(f"{field_name} {uri!r}: not a valid URI") from None
    return parts


def check_redirect_uri(
    uri: str,
    *,
    field_name: str,
    application_type: str | None,
    max_length: int,
    error: type[OAuthError] = InvalidRedirectUri,
) -> None:
    """One redirection URI (RFC 6749 section 3.1.2, RFC 8252 section 7, RFC 9700 section 4.1.1).

    Absolute; no fragment; no userinfo; no wildcard; never a script-capable or local scheme; ``http`` only
    for loopback hosts; private-use schemes only for clients that are not ``web`` clients.
    """
    if len(uri) > max_length:
        raise error(f"{field_name}: longer than {max_length} characters")
    if any(c.isspace() for c in uri) or any(ord(c) < 0x20 for c in uri):
        raise error(f"{field_name} {uri!r}: must not contain whitespace or control characters")
    if "#" in uri:
        raise error(f"{field_name} {uri!r}: must not contain a fragment (RFC 6749 section 3.1.2)")
    if "*" in uri:
        raise error(f"{field_name} {uri!r}: wildcards are not allowed; register exact URIs")
    parts = _split(uri, field_name, error)
    scheme = parts.scheme.lower()
    if not scheme or not _SCHEME.match(scheme):
        raise error(f"{field_name} {uri!r}: must be an absolute URI with a scheme")
    if scheme in FORBIDDEN_SCHEMES:
        raise error(f"{field_name} {uri!r}: scheme {scheme!r} is not allowed")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise error(f"{field_name} {uri!r}: must not contain userinfo")
    if scheme in ("http", "https"):
        host = parts.hostname or ""
        if not host:
            raise error(f"{field_name} {uri!r}: must name a host")
        if "%" in parts.netloc or "\\" in uri:
            raise error(
                f"{field_name} {uri!r}: percent-encoded or zone-qualified hosts and backslashes are not allowed"
            )
        if scheme == "http" and not is_loopback_host(host):
            raise error(
                f"{field_name} {uri!r}: 'http' is allowed only for loopback hosts "
                "(127.0.0.1, [::1], localhost); use 'https'"
            )
        return
    # a private-use URI scheme (RFC 8252 section 7.1): for native apps only
    if application_type == "web":
        raise error(
            f"{field_name} {uri!r}: private-use scheme {scheme!r} is not allowed for a 'web' client; "
            "use 'https' or register as application_type 'native'"
        )
    if not (parts.netloc or parts.path):
        raise error(f"{field_name} {uri!r}: must have a path after the scheme")


def check_web_uri(uri: str, *, field_name: str, max_length: int, https_only: bool = False) -> None:
    """``client_uri``, ``logo_uri``, ``tos_uri``, ``policy_uri``, ``jwks_uri`` (RFC 7591 section 2):
    absolute ``https`` URLs (``http`` only on loopback, unless ``https_only``), no userinfo, no fragment."""
    if len(uri) > max_length:
        raise InvalidClientMetadata(f"{field_name}: longer than {max_length} characters")
    parts = _split(uri, field_name, InvalidClientMetadata)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("https", "http") or not host:
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must be an absolute https URL")
    if scheme == "http" and (https_only or not is_loopback_host(host)):
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must use https")
    if parts.username is not None or "@" in parts.netloc:
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must not contain userinfo")
    if parts.fragment or uri.endswith("#"):
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must not contain a fragment")


# --------------------------------------------------------------------------------------------- rules

Rule = Callable[[ClientMetadata, RegistrationPolicy], None]


def redirect_uris_present(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """RFC 7591 section 2: redirection-based flows need ``redirect_uris``; the gateway requires them."""
    grant_types = metadata.grant_types or []
    if (AUTHORIZATION_CODE in grant_types or metadata.response_types) and not metadata.redirect_uris:
        raise InvalidRedirectUri("redirect_uris: at least one redirection URI is required")
    if metadata.redirect_uris and len(metadata.redirect_uris) > policy.max_redirect_uris:
        raise InvalidRedirectUri(f"redirect_uris: at most {policy.max_redirect_uris} URIs are allowed")
    if metadata.redirect_uris and len(set(metadata.redirect_uris)) != len(metadata.redirect_uris):
        raise InvalidRedirectUri("redirect_uris: contains duplicates")


def redirect_uris_safe(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Each redirect URI passes :func:`check_redirect_uri` (RFC 8252, RFC 9700 section 4.1)."""
    for index, uri in enumerate(metadata.redirect_uris or []):
        check_redirect_uri(
            uri,
            field_name=f"redirect_uris[{index}]",
            application_type=metadata.application_type,
            max_length=policy.max_uri_length,
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
            error=InvalidClientMetadata,
        )


def response_types_code_only(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Only ``code`` (RFC 9700 section 2.1.2: the implicit grant and hybrid response types are not used)."""
    for value in metadata.response_types or []:
        if value != "code":
            raise InvalidClientMetadata(
                f"response_types: {value!r} is not allowed (implicit and hybrid flows are disabled); allowed: ['code']"
            )


def grant_types_allowed(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """``grant_types`` within the allow-list; never ``implicit`` or ``password`` (RFC 9700 sections 2.1.2,
    2.4); ``client_credentials`` only where allowed (never for anonymous registration)."""
    allowed = sorted(policy.grant_types)
    for value in metadata.grant_types or []:
        if value == PASSWORD:
            raise InvalidClientMetadata(
                "grant_types: 'password' is not allowed (RFC 9700 section 2.4); allowed: " + str(allowed)
            )
        if value == IMPLICIT:
            raise InvalidClientMetadata(
                "grant_types: 'implicit' is not allowed (RFC 9700 section 2.1.2); allowed: " + str(allowed)
            )
        if value == CLIENT_CREDENTIALS and not policy.client_credentials_allowed:
            raise InvalidClientMetadata(
                "grant_types: 'client_credentials' is not allowed for anonymous registration; allowed: " + str(allowed)
            )
        if value not in policy.grant_types:
            raise InvalidClientMetadata(f"grant_types: {value!r} is not supported; allowed: {allowed}")
    if metadata.grant_types is not None and len(set(metadata.grant_types)) != len(metadata.grant_types):
        raise InvalidClientMetadata("grant_types: contains duplicates")


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


def token_endpoint_auth_method_allowed(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """``token_endpoint_auth_method`` within what the provider supports (RFC 7591 section 2)."""
    method = metadata.token_endpoint_auth_method
    if method is not None and method not in policy.token_endpoint_auth_methods:
        raise InvalidClientMetadata(
            f"token_endpoint_auth_method: {method!r} is not supported; allowed: "
            f"{sorted(policy.token_endpoint_auth_methods)}"
        )
    if method == NONE and CLIENT_CREDENTIALS in (metadata.grant_types or []):
        raise InvalidClientMetadata(
            "grant_types: 'client_credentials' needs a confidential client, not token_endpoint_auth_method 'none'"
        )


def keys_consistent(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """RFC 7591 section 2: ``jwks`` and ``jwks_uri`` MUST NOT both be present; ``private_key_jwt`` needs one;
    a JWK Set (RFC 7517 section 5) of public, asymmetric keys only."""
    if metadata.jwks is not None and metadata.jwks_uri is not None:
        raise InvalidClientMetadata("jwks, jwks_uri: only one of them may be present (RFC 7591 section 2)")
    if metadata.token_endpoint_auth_method == PRIVATE_KEY_JWT and metadata.jwks is None and not metadata.jwks_uri:
        raise InvalidClientMetadata("token_endpoint_auth_method: 'private_key_jwt' needs jwks or jwks_uri")
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
    """``client_uri``, ``logo_uri``, ``tos_uri``, ``policy_uri`` and ``jwks_uri`` are web URLs."""
    for name in ("client_uri", "logo_uri", "tos_uri", "policy_uri"):
        value = getattr(metadata, name)
        if value is not None:
            check_web_uri(value, field_name=name, max_length=policy.max_uri_length)
    if metadata.jwks_uri is not None:
        if not policy.jwks_uri_allowed:
            raise InvalidClientMetadata(
                "jwks_uri: not allowed for anonymous registration (the provider would fetch it); send the public "
                "keys as jwks instead"
            )
        check_web_uri(metadata.jwks_uri, field_name="jwks_uri", max_length=policy.max_uri_length, https_only=True)
        host = urlsplit(metadata.jwks_uri).hostname or ""
        if not is_public_host(host):
            raise InvalidClientMetadata(
                f"jwks_uri {metadata.jwks_uri!r}: must name a public host, not a loopback, private or link-local one"
            )


def strings_bounded(metadata: ClientMetadata, policy: RegistrationPolicy) -> None:
    """Human-readable strings have a sane size; ``contacts`` is a short list of addresses."""
    for name in ("client_name", "software_id", "software_version"):
        value = getattr(metadata, name)
        if value is not None and (len(value) > policy.max_string_length or not value.strip()):
            raise InvalidClientMetadata(f"{name}: must be 1 to {policy.max_string_length} characters")
        if value is not None and any(ord(c) < 0x20 for c in value):
            raise InvalidClientMetadata(f"{name}: must not contain control characters")
    contacts = metadata.contacts or []
    if len(contacts) > policy.max_contacts:
        raise InvalidClientMetadata(f"contacts: at most {policy.max_contacts} entries are allowed")
    for index, contact in enumerate(contacts):
        if not contact or len(contact) > 320 or any(c.isspace() for c in contact):
            raise InvalidClientMetadata(f"contacts[{index}]: must be an e-mail address")


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


RULES: Sequence[Rule] = (
    redirect_uris_present,
    redirect_uris_safe,
    post_logout_redirect_uris_safe,
    response_types_code_only,
    grant_types_allowed,
    grant_and_response_types_agree,
    token_endpoint_auth_method_allowed,
    keys_consistent,
    web_uris_valid,
    strings_bounded,
    scope_syntax,
)


def validate(metadata: ClientMetadata, policy: RegistrationPolicy, rules: Iterable[Rule] = RULES) -> ClientMetadata:
    """Apply the RFC 7591 defaults, then every rule in order; returns the metadata to register."""
    metadata = apply_defaults(metadata)
    for rule in rules:
        rule(metadata, policy)
    return metadata
