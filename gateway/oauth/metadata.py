"""Client metadata, RFC 7591 section 2, and the OpenID Connect Dynamic Client Registration 1.0 fields the
gateway can make a provider honour.

The models only check shapes (a list of strings is a list of strings); the rules about values live in
:mod:`gateway.policy.rules`, one function per rule, so each rejection names its field.
Unknown fields are dropped (RFC 7591 section 2: "The authorization server MUST ignore any client metadata
sent by the client that it does not understand"), and so is a client-chosen ``client_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic import Field as ModelField

from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, OAuthError
from gateway.oauth.fields import Field, Kind, Limit

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

    # fmt: off
    # The field table: one row per field (gateway.oauth.fields.Field); rules and README derive from it.
    redirect_uris: Annotated[list[str] | None, Field(
        "RFC 7591 section 2", Kind.URIS, default="required by the gateway for redirect-based grants",
        limit=Limit.URI, rules=("redirect_uris_present", "redirect_uris_safe", "metadata_uris_same_host"),
    )] = None
    token_endpoint_auth_method: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.CHOICE, default=CLIENT_SECRET_BASIC,
        rules=("rfc7591_defaults", "token_endpoint_auth_method_negotiated", "keys_allowed"),
    )] = None
    grant_types: Annotated[list[str] | None, Field(
        "RFC 7591 section 2", Kind.TEXTS, default=AUTHORIZATION_CODE,
        rules=("rfc7591_defaults", "redirect_uris_present", "grant_types_allowed", "grant_and_response_types_agree",
               "token_endpoint_auth_method_negotiated"),
    )] = None
    response_types: Annotated[list[str] | None, Field(
        "RFC 7591 section 2", Kind.TEXTS, default="code",
        rules=("rfc7591_defaults", "redirect_uris_present", "response_types_allowed",
               "grant_and_response_types_agree"),
    )] = None
    client_name: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.TEXT, limit=Limit.TEXT, shown_to_user=True,
        rules=("strings_bounded", "display_text_literal", "stored_lengths_fit"),
    )] = None
    client_uri: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.URI, limit=Limit.URI, shown_to_user=True,
        rules=("web_uris_valid", "metadata_uris_same_host", "stored_lengths_fit"),
    )] = None
    logo_uri: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.URI, limit=Limit.URI, shown_to_user=True,
        rules=("web_uris_valid", "metadata_uris_same_host", "stored_lengths_fit"),
    )] = None
    scope: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.TOKENS, default="the provider's default scopes", limit=Limit.URI,
        rules=("scope_syntax", "scopes_allowed"),
    )] = None
    contacts: Annotated[list[str] | None, Field(
        "RFC 7591 section 2", Kind.TEXTS, limit=Limit.EMAIL, rules=("strings_bounded",),
    )] = None
    tos_uri: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.URI, limit=Limit.URI, shown_to_user=True,
        rules=("web_uris_valid", "metadata_uris_same_host", "stored_lengths_fit"),
    )] = None
    policy_uri: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.URI, limit=Limit.URI, shown_to_user=True,
        rules=("web_uris_valid", "metadata_uris_same_host", "stored_lengths_fit"),
    )] = None
    jwks_uri: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.URI, limit=Limit.URI, rules=("keys_allowed", "web_uris_valid"),
    )] = None
    jwks: Annotated[dict[str, Any] | None, Field(
        "RFC 7591 section 2", Kind.JSON, rules=("keys_allowed", "jwks_usable"),
    )] = None
    software_id: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.TEXT, limit=Limit.TEXT, rules=("strings_bounded",),
    )] = None
    software_version: Annotated[str | None, Field(
        "RFC 7591 section 2", Kind.TEXT, limit=Limit.TEXT, rules=("strings_bounded",),
    )] = None
    application_type: Annotated[Literal["web", "native"] | None, Field(
        "OpenID Connect Registration 1.0 section 2", Kind.CHOICE, default="web", choices=("web", "native"),
        rules=("redirect_uris_safe", "post_logout_redirect_uris_safe"),
    )] = None
    post_logout_redirect_uris: Annotated[list[str] | None, Field(
        "OpenID Connect RP-Initiated Logout 1.0 section 3.1", Kind.URIS, limit=Limit.URI,
        rules=("post_logout_redirect_uris_safe",),
    )] = None
    # fmt: on

    def registered(self) -> dict[str, Any]:
        """The metadata as a JSON object, without absent fields (RFC 7591 section 3.2.1)."""
        return self.model_dump(exclude_none=True)


FIELDS: dict[str, Field] = {
    name: next(item for item in info.metadata if isinstance(item, Field))
    for name, info in ClientMetadata.model_fields.items()
}
"""The client metadata field table, by name, in the model's order."""


def markdown_table() -> str:
    """The README's list of client metadata fields, generated from :data:`FIELDS`."""
    lines = [
        "| Field | Defined in | Type | Default when omitted | Echoed | Length limit | Rules that read it |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in FIELDS.items():
        kind = row.kind.shape(row.choices) if row.kind is Kind.CHOICE and row.choices else row.kind.value
        limit = (
            f"`{row.limit.value}`" if row.limit in (Limit.URI, Limit.TEXT) else (row.limit.value if row.limit else "")
        )
        lines.append(
            f"| `{name}` | {row.spec} | {kind} | {row.default} | {'yes' if row.echoed else 'no'} | {limit} | "
            + ", ".join(f"`{rule}`" for rule in row.rules)
            + " |"
        )
    return "\n".join(lines) + "\n"


class ClientInformation(BaseModel):
    """Client information response, RFC 7591 section 3.2.1 and RFC 7592 section 3: the credentials, all
    registered metadata and, for the client configuration endpoint, ``registration_client_uri`` and
    ``registration_access_token`` (both or neither)."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    client_secret: str | None = None
    client_id_issued_at: int
    client_secret_expires_at: int | None = ModelField(
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
    row = FIELDS.get(name)
    return row.kind.shape(row.choices) if row is not None else "a string"
