"""Client metadata, RFC 7591 section 2, and the OpenID Connect Dynamic Client Registration 1.0 fields the
gateway can make a provider honour.

The models only check shapes (a list of strings is a list of strings); the rules about values live in
:mod:`gateway.policy.rules`, one function per rule, so each rejection names its field.
Unknown fields are dropped (RFC 7591 section 2: "The authorization server MUST ignore any client metadata
sent by the client that it does not understand"), and so is a client-chosen ``client_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, OAuthError

AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"
CLIENT_CREDENTIALS = "client_credentials"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
IMPLICIT = "implicit"
PASSWORD = "password"

NONE = "none"
CLIENT_SECRET_BASIC = "client_secret_basic"
CLIENT_SECRET_POST = "client_secret_post"
CLIENT_SECRET_JWT = "client_secret_jwt"
PRIVATE_KEY_JWT = "private_key_jwt"

TOKEN_ENDPOINT_AUTH_METHODS = frozenset(
    {NONE, CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, CLIENT_SECRET_JWT, PRIVATE_KEY_JWT}
)
"""Every ``token_endpoint_auth_method`` the gateway knows how to register."""
GRANT_TYPES = frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN, CLIENT_CREDENTIALS, DEVICE_CODE})
"""Every grant type the gateway knows how to register (``implicit`` and ``password`` never)."""

SECRET_AUTH_METHODS = frozenset({CLIENT_SECRET_BASIC, CLIENT_SECRET_POST, CLIENT_SECRET_JWT})
"""Auth methods for which the gateway issues a ``client_secret`` (RFC 7591 section 3.2.1)."""


class ClientMetadata(BaseModel):
    """Client metadata as registered (RFC 7591 section 2; OIDC Registration section 2).

    Every field is optional at this layer; :func:`gateway.policy.rules.apply_defaults` fills the
    RFC defaults and the validation rules decide what is acceptable.
    """

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    redirect_uris: list[str] | None = None
    token_endpoint_auth_method: str | None = None
    grant_types: list[str] | None = None
    response_types: list[str] | None = None
    client_name: str | None = None
    client_uri: str | None = None
    logo_uri: str | None = None
    scope: str | None = None
    contacts: list[str] | None = None
    tos_uri: str | None = None
    policy_uri: str | None = None
    jwks_uri: str | None = None
    jwks: dict[str, Any] | None = None
    software_id: str | None = None
    software_version: str | None = None
    # OpenID Connect Dynamic Client Registration 1.0, section 2
    application_type: Literal["web", "native"] | None = None
    # OpenID Connect RP-Initiated Logout 1.0, section 3.1
    post_logout_redirect_uris: list[str] | None = None

    def registered(self) -> dict[str, Any]:
        """The metadata as a JSON object, without absent fields (RFC 7591 section 3.2.1)."""
        return self.model_dump(exclude_none=True)


class ClientInformation(BaseModel):
    """Client information response, RFC 7591 section 3.2.1 and RFC 7592 section 3: the credentials, all
    registered metadata and, for the client configuration endpoint, ``registration_client_uri`` and
    ``registration_access_token`` (both or neither)."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: str | None = None
    client_id_issued_at: int
    client_secret_expires_at: int | None = Field(
        default=None, description="REQUIRED if client_secret is issued; 0 means it does not expire"
    )
    metadata: ClientMetadata
    registration_client_uri: str | None = None
    """RFC 7592 section 3: the client configuration endpoint of this client."""
    registration_access_token: str | None = None
    """RFC 7592 section 3: the Bearer token for :attr:`registration_client_uri`."""

    @model_validator(mode="after")
    def _management_pair(self) -> ClientInformation:
        # OpenID conformance suite: "registration_client_uri and registration_access_token both or neither"
        if (self.registration_client_uri is None) != (self.registration_access_token is None):
            raise ValueError("registration_client_uri and registration_access_token go together")
        return self

    def to_response(self) -> dict[str, Any]:
        """The JSON object of RFC 7591 section 3.2.1 / RFC 7592 section 3.

        ``client_secret_expires_at`` is present whenever the client authenticates with a secret, also when
        the secret itself is not in this response (a provider that does not return secrets on read).
        """
        body: dict[str, Any] = {"client_id": self.client_id}
        if self.client_secret is not None:
            body["client_secret"] = self.client_secret
        if self.client_secret is not None or self.metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS:
            body["client_secret_expires_at"] = self.client_secret_expires_at or 0
        body["client_id_issued_at"] = self.client_id_issued_at
        if self.registration_client_uri is not None and self.registration_access_token is not None:
            body["registration_client_uri"] = self.registration_client_uri
            body["registration_access_token"] = self.registration_access_token
        body.update(self.metadata.registered())
        return body


def parse_metadata(document: Mapping[str, Any]) -> ClientMetadata:
    """Turn a JSON object into :class:`ClientMetadata` (RFC 7591 section 2: unknown members dropped), mapping
    shape errors to RFC 7591 section 3.2.2 errors naming the member."""
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
