"""Client registration error responses, RFC 7591 section 3.2.2.

Every error the gateway sends is one of these: a JSON object with ``error`` and an ``error_description``
that names the field and what is allowed. Provider failures never reach the client as they are.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OAuthError(Exception):
    """An error answered as ``{"error": ..., "error_description": ...}`` (RFC 6749 section 5.2 shape)."""

    error: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400

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
    """A body over the configured limit: ``invalid_client_metadata`` with HTTP 413 (RFC 9110 section 15.5.14)."""

    status = 413


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
