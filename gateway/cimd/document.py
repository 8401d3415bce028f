"""A client ID metadata document to the client metadata the gateway registers with the provider. Pure.

draft-ietf-oauth-client-id-metadata-document section 4.1 (-01 sections 4.1 and 4.2): the document is client
metadata (RFC 7591 section 2) with a ``client_id`` that MUST equal the document's URL by simple string
comparison; ``client_secret`` and ``client_secret_expires_at`` MUST NOT be used, and neither may a shared-secret
``token_endpoint_auth_method``. MCP 2026-07-28 (client-registration) requires ``client_id``, ``client_name`` and
``redirect_uris``. Members the gateway does not understand are ignored (RFC 7591 section 2), and so are members
of ``grant_types`` and ``response_types`` the provider cannot honour (Claude's document lists the RFC 7523
``jwt-bearer`` grant, VS Code's the device grant), as long as ``authorization_code`` and ``code`` remain: a
document is refused only for what makes it unusable or unsafe.

The deployment's registration policy (:mod:`gateway.policy.rules`) still applies to the result; what is checked
here is what any deployment would refuse.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from gateway.cimd.errors import DocumentRefused, show
from gateway.oauth.errors import OAuthError
from gateway.oauth.metadata import (
    AUTHORIZATION_CODE,
    NONE,
    PRIVATE_KEY_JWT,
    REFRESH_TOKEN,
    SECRET_AUTH_METHODS,
    ClientMetadata,
    parse_metadata,
)
from gateway.policy.uris import check_redirect_uri, check_web_uri

DEFAULT_GRANT_TYPES_SUPPORTED = frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN})
"""The grants a document client keeps when the caller names none: the MCP authorization code flow and refresh."""

DOCUMENT_AUTH_METHODS = (NONE, PRIVATE_KEY_JWT)
"""Authentication methods a document client may use, in the order the gateway prefers them: a public client
with PKCE, or keys published with the document (section 4.2 of -01: "prior coordination of client credentials
is not possible")."""

MAX_URI_LENGTH = 2000
"""The registration policy's default ``max_uri_length``."""

_WEB_URI_FIELDS = ("client_uri", "logo_uri", "tos_uri", "policy_uri", "jwks_uri")
_DROPPED = ("client_id", "token_endpoint_auth_methods_supported")


def client_metadata(
    url: str,
    document: Mapping[str, Any],
    *,
    grant_types_supported: Collection[str] | None = None,
) -> ClientMetadata:
    """The :class:`ClientMetadata` of the document fetched from ``url``, or :class:`DocumentRefused` (stage
    ``document``) naming the member that makes it unusable.

    - ``client_id`` equal to ``url``, character for character (section 4.1: no normalisation).
    - ``client_name`` (a non-empty string) and ``redirect_uris`` (a non-empty list) present (MCP 2026-07-28).
    - No ``client_secret`` or ``client_secret_expires_at`` (section 4.1).
    - The authentication method: from ``token_endpoint_auth_methods_supported`` when the document lists the
      methods it can use (OpenID Connect RP Metadata Choices 1.0; ChatGPT's document), ``none`` if listed, else
      ``private_key_jwt`` if the document has ``jwks`` or ``jwks_uri``; else ``token_endpoint_auth_method``
      (``none``, or ``private_key_jwt`` with keys; shared-secret methods refused, section 4.1); else ``none``.
      Keys are kept only for ``private_key_jwt``.
    - ``grant_types`` limited to ``grant_types_supported`` (default: ``authorization_code`` and
      ``refresh_token``), ``authorization_code`` required (default when absent); ``response_types`` limited to
      ``code`` (default when absent).
    - Every other member as registration parses it (:func:`gateway.oauth.metadata.parse_metadata`): a member
      of the wrong shape is refused by name; redirect URIs must be safe (no fragment, userinfo, wildcard,
      script or local scheme; ``http`` only on loopback) and web URIs ``https``.
    """
    _check_client_id(url, document)
    for member in ("client_secret", "client_secret_expires_at"):
        if member in document:
            raise DocumentRefused("document", f"the document must not contain {member} (documents carry no secrets)")
    _check_required(document)
    members = {key: value for key, value in document.items() if key not in _DROPPED}
    method = _auth_method(document)
    members["token_endpoint_auth_method"] = method
    if method != PRIVATE_KEY_JWT:
        members.pop("jwks", None)
        members.pop("jwks_uri", None)
    supported = DEFAULT_GRANT_TYPES_SUPPORTED if grant_types_supported is None else frozenset(grant_types_supported)
    members["grant_types"] = _kept("grant_types", document.get("grant_types", [AUTHORIZATION_CODE]), supported)
    members["response_types"] = _kept("response_types", document.get("response_types", ["code"]), {"code"})
    if AUTHORIZATION_CODE not in members["grant_types"]:
        raise DocumentRefused(
            "document", f"grant_types {show(document.get('grant_types'))} must include 'authorization_code'"
        )
    if not members["response_types"]:
        raise DocumentRefused("document", f"response_types {show(document.get('response_types'))} must include 'code'")
    try:
        metadata = parse_metadata(members)
        _check_uris(metadata)
    except OAuthError as exc:
        raise DocumentRefused("document", exc.description) from None
    return metadata


def _check_client_id(url: str, document: Mapping[str, Any]) -> None:
    client_id = document.get("client_id")
    if not isinstance(client_id, str):
        raise DocumentRefused("document", "the document must contain client_id, the URL it is served from")
    if client_id != url:
        raise DocumentRefused(
            "document",
            f"the document's client_id {show(client_id)} is not the URL it was fetched from, {show(url)} "
            "(compared character for character)",
        )


def _check_required(document: Mapping[str, Any]) -> None:
    name = document.get("client_name")
    if not isinstance(name, str) or not name.strip():
        raise DocumentRefused("document", "the document must contain client_name, a non-empty string")
    redirect_uris = document.get("redirect_uris")
    if not isinstance(redirect_uris, list) or not redirect_uris:
        raise DocumentRefused("document", "the document must contain redirect_uris, a non-empty array of URIs")


def _auth_method(document: Mapping[str, Any]) -> str:
    """RP Metadata Choices first (the client's list of what it can do), then the single declared method."""
    has_keys = "jwks" in document or "jwks_uri" in document
    declared = document.get("token_endpoint_auth_method")
    if isinstance(declared, str) and declared in SECRET_AUTH_METHODS:
        raise DocumentRefused(
            "document",
            f"token_endpoint_auth_method {declared!r} uses a shared secret, which a metadata document cannot "
            "have; use 'none' or 'private_key_jwt'",
        )
    if "token_endpoint_auth_methods_supported" in document:
        offered = document["token_endpoint_auth_methods_supported"]
        if not isinstance(offered, list) or not all(isinstance(item, str) for item in offered):
            raise DocumentRefused(
                "document",
                "token_endpoint_auth_methods_supported must be an array of token_endpoint_auth_method values",
            )
        if NONE in offered:
            return NONE
        if PRIVATE_KEY_JWT in offered and has_keys:
            return PRIVATE_KEY_JWT
        raise DocumentRefused(
            "document",
            f"token_endpoint_auth_methods_supported {show(offered)} offers no token_endpoint_auth_method this server "
            "accepts from a document: 'none', or 'private_key_jwt' with jwks or jwks_uri",
        )
    if declared is None and "token_endpoint_auth_method" not in document:
        return NONE
    if declared == NONE:
        return NONE
    if declared == PRIVATE_KEY_JWT:
        if not has_keys:
            raise DocumentRefused(
                "document", "token_endpoint_auth_method 'private_key_jwt' needs the client's keys: jwks or jwks_uri"
            )
        return PRIVATE_KEY_JWT
    raise DocumentRefused(
        "document",
        f"token_endpoint_auth_method {show(declared)} is not accepted from a document; use 'none' or 'private_key_jwt'",
    )


def _kept(member: str, value: Any, supported: Collection[str]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DocumentRefused("document", f"{member} must be an array of strings")
    kept: list[str] = []
    for item in value:
        if item in supported and item not in kept:
            kept.append(item)
    return kept


def _check_uris(metadata: ClientMetadata) -> None:
    """Redirect URIs under the fixed safety rules with the union of the native and web rules (the deployment's
    own redirect policy runs later, with the document's ``application_type``); web URIs https only."""
    for index, uri in enumerate(metadata.redirect_uris or []):
        check_redirect_uri(uri, field_name=f"redirect_uris[{index}]", application_type=None, max_length=MAX_URI_LENGTH)
    for name in _WEB_URI_FIELDS:
        value = getattr(metadata, name)
        if value is not None:
            check_web_uri(value, field_name=name, max_length=MAX_URI_LENGTH, https_only=True)
