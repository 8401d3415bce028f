"""What each step expects of the server's answers: pure checks returning the problems found (empty: pass).

- registration: RFC 7591 section 3.2.1 (201, the registered metadata echoed, a ``client_secret`` exactly when
  the auth method needs one, ``client_secret_expires_at`` with it), RFC 7592 section 3 (``registration_client_uri``
  and ``registration_access_token`` together), ``Cache-Control: no-store`` on an answer carrying credentials
  (as RFC 6749 section 5.1 for tokens), CORS for browser clients;
- refused registrations: RFC 7591 section 3.2.2 (status, JSON ``error`` code, an ``error_description``);
- authorization response: RFC 6749 section 4.1.2 (back at the ``redirect_uri``, ``code``, ``state``),
  RFC 9207 section 2.4 (``iss``, when present, is the issuer);
- token response: RFC 6749 section 5.1 (200, ``access_token``, ``token_type`` Bearer).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from gateway.conformance.oauth import DEFAULT_AUTH_METHOD, SECRET_METHODS, redirect_params, redirect_target

ECHO_EXEMPT = frozenset({"scope", "jwks"})
"""Requested members a server may legitimately change: ``scope`` (RFC 7591 section 2: the server may replace
it), ``jwks`` (the key set is echoed in a normalised form, if at all)."""
MAY_DROP = frozenset(
    {"client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri", "contacts", "software_id", "software_version"}
)
"""Self-asserted display metadata a server may refuse to register (RFC 7591 sections 3.2.1 and 5): left out of
the answer, it was not registered; echoed, it must be what was sent. Every other requested member (redirect URIs,
grant and response types, auth method, application type) decides how the client behaves and must be echoed."""
UNORDERED = frozenset({"redirect_uris", "grant_types", "response_types", "contacts"})


def expected_auth_method(sent: Mapping[str, Any], override: str | None = None) -> str:
    """The ``token_endpoint_auth_method`` a faithful server registers: the profile's expectation, else the
    requested one, else RFC 7591 section 2's default ``client_secret_basic``."""
    return override or str(sent.get("token_endpoint_auth_method") or DEFAULT_AUTH_METHOD)


def cors_problems(headers: Mapping[str, str], origin: str) -> list[str]:
    """A browser at ``origin`` can read the answer (Fetch standard CORS check: ``*`` or the origin itself)."""
    allowed = headers.get("Access-Control-Allow-Origin")
    if allowed not in ("*", origin):
        return [f"no CORS for {origin} (Access-Control-Allow-Origin: {allowed!r})"]
    return []


def preflight_problems(status: int, headers: Mapping[str, str], origin: str) -> list[str]:
    """The CORS preflight of a JSON POST from ``origin`` succeeds (2xx, POST and Content-Type allowed)."""
    problems = [] if 200 <= status < 300 else [f"CORS preflight answered {status}"]
    problems += cors_problems(headers, origin)
    methods = headers.get("Access-Control-Allow-Methods", "")
    if "POST" not in methods.upper() and methods.strip() != "*":
        problems.append(f"preflight does not allow POST (Access-Control-Allow-Methods: {methods!r})")
    allowed_headers = headers.get("Access-Control-Allow-Headers", "").lower()
    if "content-type" not in allowed_headers and allowed_headers.strip() != "*":
        problems.append(f"preflight does not allow Content-Type (Access-Control-Allow-Headers: {allowed_headers!r})")
    return problems


def _same(sent: Any, echoed: Any, name: str) -> bool:
    if name in UNORDERED and isinstance(sent, list) and isinstance(echoed, list):
        return sorted(map(str, sent)) == sorted(map(str, echoed))
    return bool(sent == echoed)


def registration_problems(
    sent: Mapping[str, Any],
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    auth_method: str,
) -> list[str]:
    """What is wrong with a registration answer to ``sent`` (RFC 7591 section 3.2.1), ``auth_method`` being
    the method the server must register (see :func:`expected_auth_method`)."""
    if status != 201:
        error = body.get("error") if isinstance(body, Mapping) else None
        if not error:
            return [f"status {status}, expected 201"]
        description = str(body.get("error_description") or "")[:300]
        return [f"status {status}, expected 201: {error}: {description}".rstrip(": ")]
    if not isinstance(body, Mapping):
        return ["the answer is not a JSON object"]
    problems = []
    if not isinstance(body.get("client_id"), str) or not body["client_id"]:
        problems.append("no client_id")
    for name, value in sent.items():
        if name in ECHO_EXEMPT:
            continue
        if name not in body:
            if name not in MAY_DROP:
                problems.append(f"{name} is not echoed")
        elif not _same(value, body[name], name):
            problems.append(f"{name} echoed as {body[name]!r}, sent {value!r}")
    echoed_method = body.get("token_endpoint_auth_method")
    if echoed_method is None:
        problems.append("token_endpoint_auth_method is not in the answer (RFC 7591 section 3.2.1: all metadata)")
    elif echoed_method != auth_method:
        problems.append(f"token_endpoint_auth_method {echoed_method!r}, expected {auth_method!r}")
    method = echoed_method or auth_method
    has_secret = isinstance(body.get("client_secret"), str) and bool(body["client_secret"])
    if method in SECRET_METHODS and not has_secret:
        problems.append(f"no client_secret although {method!r} needs one")
    if method not in SECRET_METHODS and "client_secret" in body:
        problems.append(f"a client_secret was issued for {method!r}, which uses none")
    if has_secret and not isinstance(body.get("client_secret_expires_at"), int):
        problems.append("client_secret_expires_at missing although a secret was issued (RFC 7591 section 3.2.1)")
    if ("registration_client_uri" in body) != ("registration_access_token" in body):
        problems.append("registration_client_uri and registration_access_token must come together (RFC 7592 3)")
    if "scope" in body and not isinstance(body["scope"], str):
        problems.append("scope is not a string")
    if "no-store" not in headers.get("Cache-Control", "").lower():
        problems.append(f"Cache-Control {headers.get('Cache-Control')!r} lacks no-store on an answer with credentials")
    return problems


def rejection_problems(status: int, body: Any, *, expected_status: int, expected_error: str) -> list[str]:
    """A refused registration answers ``expected_status`` with ``{"error": expected_error, "error_description":
    ...}`` (RFC 7591 section 3.2.2) and creates nothing."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if status != expected_status or error != expected_error:
        if status == 201:
            return [f"expected {expected_status} {expected_error}, got 201: the client was registered"]
        got = f"{status} {error!r}" if error else f"{status} without an RFC 7591 error JSON"
        return [f"expected {expected_status} {expected_error}, got {got}"]
    description = body.get("error_description") if isinstance(body, Mapping) else None
    if not isinstance(description, str) or not description.strip():
        return ["no error_description saying what is wrong"]
    return []


def authorization_response_problems(
    location: str, *, redirect_uri: str, state: str, issuer: str
) -> tuple[list[str], str | None]:
    """The redirect that ends the authorization request: back at ``redirect_uri`` with a ``code`` and the
    same ``state`` (RFC 6749 section 4.1.2), ``iss`` equal to the issuer when sent (RFC 9207 section 2.4).
    Returns the problems and the code. Never quotes the code itself."""
    params = redirect_params(location)
    if "error" in params:
        description = params.get("error_description", "")
        return [f"authorization error {params['error']!r}: {description}".rstrip(": ")], None
    problems = []
    if redirect_target(location) != redirect_target(redirect_uri):
        target = "{}://{}{}".format(*redirect_target(location))
        problems.append(f"redirected to {target}, not to the redirect_uri {redirect_uri}")
    if params.get("state") != state:
        problems.append("state not returned unchanged")
    if "iss" in params and params["iss"] != issuer:
        problems.append(f"iss {params['iss']!r} is not the issuer (RFC 9207 section 2.4)")
    code = params.get("code")
    if not code:
        problems.append("no code in the authorization response")
    return problems, code


def token_problems(status: int, body: Any) -> list[str]:
    """A successful token response (RFC 6749 section 5.1); an error names the RFC 6749 section 5.2 code only."""
    if status != 200 or not isinstance(body, Mapping):
        if isinstance(body, Mapping) and "error" in body:
            description = str(body.get("error_description") or "")[:200]
            return [f"status {status}: {body['error']!r} {description}".rstrip()]
        return [f"status {status}, expected 200 with a JSON token response"]
    problems = []
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        problems.append("no access_token")
    if str(body.get("token_type", "")).lower() != "bearer":
        problems.append(f"token_type {body.get('token_type')!r}, expected Bearer")
    return problems


# ------------------------------------------------------------------ MCP 2025-11-25 and 2026-07-28 additions


def cimd_advertisement_problems(document: Any) -> list[str]:
    """What keeps a client from using its Client ID Metadata Document here (MCP 2025-11-25+ ``client-registration``:
    the server advertises ``client_id_metadata_document_supported``; CIMD clients are public, and Claude picks CIMD
    only when ``none`` is among ``token_endpoint_auth_methods_supported`` too)."""
    if not isinstance(document, Mapping):
        return ["no metadata document"]
    problems = []
    if document.get("client_id_metadata_document_supported") is not True:
        problems.append(
            "client_id_metadata_document_supported is not true (MCP 2025-11-25 and 2026-07-28: authorization "
            "servers SHOULD support Client ID Metadata Documents)"
        )
    if "none" not in (document.get("token_endpoint_auth_methods_supported") or []):
        problems.append("'none' is not in token_endpoint_auth_methods_supported (CIMD clients are public clients)")
    return problems


def iss_advertisement_problems(document: Any) -> list[str]:
    """RFC 9207 section 3 / MCP 2026-07-28: a server that sends ``iss`` (it SHOULD) advertises
    ``authorization_response_iss_parameter_supported``."""
    if not isinstance(document, Mapping):
        return ["no metadata document"]
    if document.get("authorization_response_iss_parameter_supported") is not True:
        return [
            "authorization_response_iss_parameter_supported is not true (MCP 2026-07-28: authorization servers "
            "SHOULD send RFC 9207 iss and then MUST advertise it)"
        ]
    return []


def iss_problems(location: str, issuer: str) -> list[str]:
    """RFC 9207 section 2: the authorization response (success or error) carries ``iss``, equal to the issuer
    (simple string comparison, section 2.4)."""
    params = redirect_params(location)
    if "iss" not in params:
        return ["no iss in the authorization response (RFC 9207 section 2; MCP 2026-07-28 SHOULD)"]
    if params["iss"] != issuer:
        return [f"iss {params['iss']!r} is not the issuer {issuer!r} (RFC 9207 section 2.4)"]
    return []


def error_redirect_problems(
    status: int, location: str | None, *, redirect_uri: str, state: str, issuer: str, expected_error: str
) -> list[str]:
    """An error the authorization endpoint answers by redirecting to the (verified) ``redirect_uri`` with
    ``error``, the same ``state`` (RFC 6749 section 4.1.2.1) and ``iss`` (RFC 9207)."""
    if status not in (302, 303, 307) or not location:
        return [f"status {status}, expected a redirect to the redirect_uri with error={expected_error}"]
    if redirect_target(location) != redirect_target(redirect_uri):
        target = "{}://{}{}".format(*redirect_target(location))
        return [f"redirected to {target}, not to the redirect_uri with error={expected_error}"]
    params = redirect_params(location)
    problems = []
    if params.get("error") != expected_error:
        got = params.get("error") or ("a code" if "code" in params else "no error")
        problems.append(f"error {got!r}, expected {expected_error!r}")
    if params.get("state") != state:
        problems.append("state not returned unchanged")
    return problems + iss_problems(location, issuer)


def refused_request_problems(status: int, headers: Mapping[str, str], body: Any, *, expected_error: str) -> list[str]:
    """A request refused before anything reaches the provider: ``400`` with ``{"error": expected_error,
    "error_description": ...}`` and no redirect (an unverified redirect URI is never redirected to, RFC 6749
    section 4.1.2.1)."""
    if "Location" in headers or "location" in headers:
        return [f"status {status}: redirected to {headers.get('Location') or headers.get('location')}"]
    error = body.get("error") if isinstance(body, Mapping) else None
    if status != 400 or error != expected_error:
        got = f"{status} {error!r}" if error else f"{status} without a JSON error"
        return [f"expected 400 {expected_error}, got {got}"]
    description = body.get("error_description") if isinstance(body, Mapping) else None
    if not isinstance(description, str) or not description.strip():
        return ["no error_description saying what is wrong"]
    return []


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWS compact serialisation (RFC 7515 section 7.1), *unverified*: only to read ``aud``; the
    suite does not act on the token. ``None`` for an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return None
    return claims if isinstance(claims, dict) else None


def audience_problems(aud: Any, resource: str) -> list[str]:
    """RFC 8707 section 2 / MCP 2025-06-18+: the token's audience (``aud``, a string or an array, RFC 7519
    section 4.1.3) names the resource it was requested for."""
    if isinstance(aud, str):
        audience = [aud]
    elif isinstance(aud, list):
        audience = [item for item in aud if isinstance(item, str)]
    else:
        audience = []
    if resource not in audience:
        return [f"aud {audience!r} does not name the resource {resource!r} (RFC 8707 section 2)"]
    return []


def published_document_problems(body: Any, status: int, url: str) -> list[str]:
    """A client's published Client ID Metadata Document: 200, a JSON object whose ``client_id`` is its URL exactly,
    with ``redirect_uris`` (draft-ietf-oauth-client-id-metadata-document section 4)."""
    if status != 200:
        return [f"{url} answered {status}"]
    if not isinstance(body, Mapping):
        return [f"{url} is not a JSON object"]
    problems = []
    if body.get("client_id") != url:
        problems.append(f"its client_id {body.get('client_id')!r} is not its URL")
    if not isinstance(body.get("redirect_uris"), list) or not body["redirect_uris"]:
        problems.append("no redirect_uris")
    return problems
