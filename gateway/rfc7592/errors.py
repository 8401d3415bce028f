"""Error responses of the client configuration endpoint, RFC 7592 sections 2.1-2.3.

A missing, malformed or wrong registration access token, an unknown client and a client the gateway does not
manage all get the same answer, RFC 6750 section 3.1 ``invalid_token`` with HTTP 401, so the endpoint cannot
be used to find out which client IDs exist. Bad metadata in an update gets the RFC 7591 section 3.2.2 errors
(:mod:`gateway.rfc7591.errors`).
"""

from __future__ import annotations

from aiohttp import hdrs

from gateway.rfc7591.errors import OAuthError


class InvalidToken(OAuthError):
    """RFC 6750 section 3.1: "The access token provided is expired, revoked, malformed, or invalid for other
    reasons. The resource SHOULD respond with the HTTP 401 (Unauthorized) status code."

    RFC 7592 section 2.1: "If the registration access token used to make this request is not valid, the server
    MUST respond with an error as described in OAuth 2.0 Bearer Token Usage [RFC6750]." and "If the client does
    not exist on this server, the server MUST respond with HTTP 401 Unauthorized". One answer serves both.
    """

    error = "invalid_token"
    status = 401

    def __init__(self, description: str, *, token_presented: bool = True) -> None:
        # RFC 6750 section 3.1: a request without any credential gets the challenge without an error code.
        challenge = 'Bearer error="invalid_token"' if token_presented else "Bearer"
        super().__init__(description, headers={hdrs.WWW_AUTHENTICATE: challenge})
