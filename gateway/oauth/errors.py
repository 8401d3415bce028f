"""OAuth error responses: RFC 7591 section 3.2.2 (registration), RFC 6750 section 3.1 (Bearer tokens).

Every error the gateway sends is one of these: a JSON object with ``error`` and an ``error_description``
that names the field and what is allowed. Provider failures never reach the client as they are.

A missing, malformed or wrong registration access token, an unknown client and a client the gateway does not
manage all get the same answer, RFC 6750 section 3.1 ``invalid_token`` with HTTP 401 (RFC 7592 section 2.1), so
the client configuration endpoint cannot be used to find out which client IDs exist.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import hdrs


class OAuthError(Exception):
    """An error answered as ``{"error": ..., "error_description": ...}`` (RFC 6749 section 5.2 shape)."""

    error: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400
    close: ClassVar[bool] = False
    """End the connection after the answer: the request's body was not read to its end (RFC 9112 section 9.6)."""

    def __init__(self, description: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


class InvalidRedirectUri(OAuthError):
    """RFC 7591 section 3.2.2: "The value of one or more redirection URIs is invalid." """

    error = "invalid_redirect_uri"


class InvalidClientMetadata(OAuthError):
    """RFC 7591 section 3.2.2: "The value of one of the client metadata fields is invalid and the server
    has rejected this request." """

    error = "invalid_client_metadata"


class RequestTooLarge(InvalidClientMetadata):
    """A body over the configured limit: ``invalid_client_metadata`` with HTTP 413 (RFC 9110 section 15.5.14);
    the rest of the body is not read, so the connection closes."""

    status = 413
    close = True


class RequestTimeout(OAuthError):
    """A body that did not arrive within the deadline: ``invalid_request`` with HTTP 408 (RFC 9110 section
    15.5.9); the connection is closed after the answer (RFC 9112 section 9.6)."""

    status = 408
    close = True


class InvalidSoftwareStatement(OAuthError):
    """RFC 7591 section 3.2.2: "The software statement presented is invalid." """

    error = "invalid_software_statement"


class UnapprovedSoftwareStatement(OAuthError):
    """RFC 7591 section 3.2.2: "The software statement presented is not approved for use by this
    authorization server." """

    error = "unapproved_software_statement"


class TemporarilyUnavailable(OAuthError):
    """The provider cannot be reached or failed: 503 with ``Retry-After`` (RFC 6749 section 4.1.2.1 code)."""

    error = "temporarily_unavailable"
    status = 503


class ServerError(OAuthError):
    """An unexpected failure inside the gateway; the description never carries internals."""

    error = "server_error"
    status = 500


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


class InvalidBearerRequest(OAuthError):
    """RFC 6750 section 3.1 ``invalid_request``: "The request [...] uses more than one method for including an
    access token, or is otherwise malformed. The resource server SHOULD respond with the HTTP 400 (Bad Request)
    status code." Several ``Authorization`` headers, or a token in the URL as well as in the header."""

    def __init__(self, description: str) -> None:
        super().__init__(description, headers={hdrs.WWW_AUTHENTICATE: 'Bearer error="invalid_request"'})


class InvalidRequest(OAuthError):
    """RFC 6749 sections 4.1.2.1 and 5.2 ``invalid_request``: a parameter missing, repeated or malformed (at the
    authorization endpoint, answered to the user agent when the redirect URI cannot be trusted)."""

    error = "invalid_request"


class InvalidClient(OAuthError):
    """RFC 6749 section 5.2 ``invalid_client``; at the authorization endpoint (section 4.1.2.1: "If the request
    fails due to a [...] invalid client identifier, the authorization server SHOULD inform the resource owner of
    the error and MUST NOT automatically redirect"): a client metadata document that cannot be used."""

    error = "invalid_client"


class InvalidTarget(OAuthError):
    """RFC 8707 section 2 ``invalid_target``: "The requested resource is invalid, missing, unknown, or
    malformed." (HTTP 400 at the token endpoint, a redirect error at the authorization endpoint.)"""

    error = "invalid_target"


class TooManyAuthorizations(OAuthError):
    """RFC 6585 section 4: too many client metadata documents turned into clients from one source."""

    error = "temporarily_unavailable"
    status = 429
