"""The one Bearer token parser, RFC 6750 section 2.1, for every token the gateway accepts: initial access tokens
at the registration endpoint (RFC 7591 section 3) and registration access tokens at the client configuration
endpoint (RFC 7592 section 2), both "an OAuth 2.0 Bearer Token".

Only the ``Authorization`` request header field is accepted (section 2.1); the form-encoded body parameter
(section 2.2) is not, the body holds client metadata; the URI query parameter (section 2.3) is refused, a token
in a URL ends up in logs. A request that carries its token ambiguously (several ``Authorization`` headers) is
section 3.1 ``invalid_request`` (HTTP 400): one of them is never picked silently. No error description ever
quotes the token.
"""

from __future__ import annotations

import re

from aiohttp import hdrs, web

from gateway.oauth.errors import InvalidBearerRequest, InvalidToken

MAX_TOKEN_LENGTH = 4096
"""Longer than any token the gateway issues or verifies (a signed initial access token is a few hundred bytes)."""

_BEARER = re.compile(r"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*)")
"""RFC 6750 section 2.1: ``credentials = "Bearer" 1*SP b64token`` (the scheme is case-insensitive, RFC 9110
section 11.1), ``b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="``."""


def bearer_token(request: web.BaseRequest, *, credential: str) -> str | None:
    """The Bearer token of ``request`` (RFC 6750 section 2.1), ``None`` when it sends no ``Authorization``
    header (or a blank one): whether that is acceptable is the caller's decision.

    ``credential`` names the token in error descriptions ("initial access token", "registration access token").
    Raises :class:`~gateway.oauth.errors.InvalidBearerRequest` (400) for several ``Authorization`` headers and
    :class:`~gateway.oauth.errors.InvalidToken` (401) for a token in the URL, another scheme, or a missing,
    malformed or oversized token; never anything else.
    """
    if "access_token" in request.query:
        raise InvalidToken(f"send the {credential} in the Authorization header, never in the URL")
    values = request.headers.getall(hdrs.AUTHORIZATION, [])
    if len(values) > 1:
        raise InvalidBearerRequest(
            f"send a single Authorization header: 'Authorization: Bearer <{credential}>' (RFC 6750 section 3.1)"
        )
    if not values or not values[0].strip():
        return None
    match = _BEARER.fullmatch(values[0].strip())
    if match is None or len(match.group(1)) > MAX_TOKEN_LENGTH:
        raise InvalidToken(f"the Authorization header must be 'Bearer <{credential}>' (RFC 6750 section 2.1)")
    return match.group(1)
