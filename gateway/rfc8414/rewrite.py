"""The served discovery document: the provider's own, with the gateway's registration endpoint (RFC 8414).

:func:`rewrite` is pure: it takes the provider's parsed metadata and returns the document the gateway
serves. It changes only what the gateway is responsible for and keeps every other field as the provider
published it, so the advertised endpoints, grant types and algorithms stay the provider's truth.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Set
from typing import Any

S256 = "S256"
"""RFC 7636 section 4.2 code challenge method; MCP 2025-11-25 clients refuse an AS that does not list it."""

NONE = "none"
"""RFC 7591 section 2 ``token_endpoint_auth_method`` of a public client."""

OPENID = "openid"
"""OpenID Connect Core 1.0 section 3.1.2.1: the scope value that makes a request an OpenID one. OpenID Discovery
1.0 section 3: "The server MUST support the openid scope value", so it is never withheld from ``scopes_supported``."""

_GATEWAY_OWNED = frozenset({"issuer", "registration_endpoint", "scopes_supported"})


class UpstreamMetadataError(ValueError):
    """The provider's metadata cannot be served: not a JSON object, no ``issuer``, or an unexpected one.

    RFC 8414 section 3.3: "The "issuer" value returned MUST be identical to the authorization server's issuer
    identifier value into which the well-known URI string was inserted [...]. If these values are not
    identical, the data contained in the response MUST NOT be used." Clients would reject such a document,
    so the gateway keeps serving its last good one instead.
    """


def rewrite(
    upstream: Mapping[str, Any],
    *,
    registration_endpoint: str,
    expected_issuer: str | None = None,
    extra: Mapping[str, Any] | None = None,
    registrable_scopes: Set[str] | None = None,
    public_clients: bool = False,
) -> dict[str, Any]:
    """Turn the provider's metadata (RFC 8414 section 2) into the document the gateway serves.

    - ``issuer`` is kept byte for byte and must equal ``expected_issuer`` when one is given (section 3.3).
    - ``registration_endpoint`` (section 2, RFC 7591 section 3) becomes the gateway's. If the provider lists
      mutual-TLS aliases (RFC 8705 section 5), their ``registration_endpoint`` becomes the gateway's too, so
      no client is sent around the gateway to the provider's own registration service.
    - ``code_challenge_methods_supported`` (section 2, RFC 7636) contains ``S256``; the provider's other
      methods stay.
    - ``scopes_supported`` (section 2) keeps, in the provider's order, only the scope values in
      ``registrable_scopes``: what a registration through the gateway can obtain (the adapter's limit and the
      policy's allow-list, :func:`gateway.rfc8414.scopes.registrable_scopes_source`). MCP clients authorize with this
      list when the resource names no scopes, so a value no registration gets would fail their authorization
      request with ``invalid_scope``; section 2 lets a server "choose not to advertise some supported scope
      values". ``openid`` stays whenever the provider lists it. ``None``: no limit, the provider's list as is;
      a provider that omits the field (or sends a non-list) keeps it that way.
    - With ``public_clients`` (Client ID Metadata Documents are accepted), ``token_endpoint_auth_methods_supported``
      (section 2) contains ``none``: MCP clients pick CIMD only when the server advertises both
      ``client_id_metadata_document_supported`` and ``none`` (a document client has no secret).
    - ``extra`` is merged last (fields for features the gateway implements itself, e.g.
      ``client_id_metadata_document_supported``); it may not set ``issuer``, ``registration_endpoint`` or
      ``scopes_supported``.
    - Everything else is left as the provider had it. The result shares no mutable value with the input.

    Raises :class:`UpstreamMetadataError` when the upstream document cannot be served.
    """
    if not isinstance(upstream, Mapping):
        raise UpstreamMetadataError(f"metadata must be a JSON object, got {type(upstream).__name__}")
    issuer = upstream.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise UpstreamMetadataError("metadata has no 'issuer' string (RFC 8414 section 2: REQUIRED)")
    if expected_issuer is not None and issuer != expected_issuer:
        raise UpstreamMetadataError(
            f"metadata 'issuer' is {issuer!r}, expected {expected_issuer!r} (RFC 8414 section 3.3)"
        )
    if extra is not None and (owned := _GATEWAY_OWNED.intersection(extra)):
        raise ValueError(f"extra metadata may not set {sorted(owned)}")

    document: dict[str, Any] = copy.deepcopy(dict(upstream))
    document["registration_endpoint"] = registration_endpoint
    aliases = document.get("mtls_endpoint_aliases")
    if isinstance(aliases, dict) and "registration_endpoint" in aliases:
        aliases["registration_endpoint"] = registration_endpoint
    document["code_challenge_methods_supported"] = _with_s256(document.get("code_challenge_methods_supported"))
    scopes = document.get("scopes_supported")
    if registrable_scopes is not None and isinstance(scopes, list):
        document["scopes_supported"] = _registrable(scopes, registrable_scopes)
    if public_clients:
        methods = document.get("token_endpoint_auth_methods_supported")
        if not isinstance(methods, list):
            methods = ["client_secret_basic"]  # section 2: the default when omitted
        document["token_endpoint_auth_methods_supported"] = methods if NONE in methods else [*methods, NONE]
    if extra:
        document.update(copy.deepcopy(dict(extra)))
    return document


def _with_s256(methods: object) -> list[Any]:
    """The provider's PKCE methods plus ``S256``; a missing or malformed value becomes ``["S256"]``."""
    if not isinstance(methods, list):
        return [S256]
    return methods if S256 in methods else [*methods, S256]


def _registrable(scopes: list[Any], registrable: Set[str]) -> list[str]:
    """The provider's scope values a registration can obtain, in the provider's order, once each; ``openid``
    always (OpenID Discovery 1.0 section 3). Non-string entries are not scope values and are dropped."""
    kept = (s for s in scopes if isinstance(s, str) and (s in registrable or s == OPENID))
    return list(dict.fromkeys(kept))


def serialize(document: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON with sorted keys: equal documents give equal bytes (and so equal ETags) across
    refreshes and across gateway instances."""
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True).encode()
