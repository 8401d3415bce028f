"""Pure mappings between RFC 7591 metadata and each provider's client representation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ory_hydra_client.models.o_auth2_client import OAuth2Client

from adapters.base import NewClient
from adapters.hydra.mapping import METADATA_KEY, from_hydra, is_managed, to_hydra
from adapters.keycloak.mapping import (
    MANAGED_ATTRIBUTE,
    RealmScopes,
    from_keycloak,
    keycloak_redirect_uris,
    registered_view,
    scope_assignment,
    to_keycloak,
)
from adapters.keycloak.mapping import is_managed as keycloak_is_managed
from gateway.oauth.metadata import parse_metadata
from gateway.policy import RegistrationPolicy, validate

REALM = RealmScopes(
    names=frozenset(
        {"basic", "profile", "email", "roles", "web-origins", "acr", "offline_access", "address", "mcp", "admin-api"}
    ),
    default_default=("basic", "profile", "email", "roles", "web-origins", "acr"),
    default_optional=("offline_access", "address", "mcp"),
)


def new_client(body: dict[str, Any], secret: str | None = None) -> NewClient:
    metadata = validate(parse_metadata(body), RegistrationPolicy())
    return NewClient(
        client_id="6f1c2d6e-2b7a-4c39-9d0c-5b8d7a3e1f20",
        client_secret=secret,
        client_id_issued_at=1_780_000_000,
        client_secret_expires_at=0,
        metadata=metadata,
    )


CONFIDENTIAL = {
    "redirect_uris": ["https://app.example.com/cb"],
    "token_endpoint_auth_method": "client_secret_post",
    "grant_types": ["authorization_code", "refresh_token"],
    "client_name": "App",
    "contacts": ["ops@example.com"],
    "software_id": "2e6dc280-f3c3-4e01-99a7-8181dbd1d23d",
    "software_version": "0.1.29",
    "logo_uri": "https://app.example.com/logo.png",
    "scope": "openid mcp offline_access",
}
PUBLIC = {
    "redirect_uris": ["http://127.0.0.1:3000/callback", "cursor://anysphere.cursor-mcp/oauth/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "application_type": "native",
}


# ---------------------------------------------------------------------------------------- Hydra


def test_hydra_body_is_valid_for_the_published_hydra_client_schema() -> None:
    body = to_hydra(new_client(CONFIDENTIAL, secret="s" * 43))
    parsed = OAuth2Client.from_dict(body)
    assert parsed is not None
    assert parsed.client_id == body["client_id"]
    assert parsed.token_endpoint_auth_method == "client_secret_post"


def test_hydra_body_keeps_what_hydra_has_no_field_for_in_metadata() -> None:
    body = to_hydra(new_client(CONFIDENTIAL, secret="s" * 43))
    ours = body["metadata"][METADATA_KEY]
    assert ours["managed"] is True
    assert ours["extra"] == {"software_id": CONFIDENTIAL["software_id"], "software_version": "0.1.29"}
    assert body["contacts"] == ["ops@example.com"]
    assert body["skip_consent"] is False
    assert "software_id" not in body


def test_hydra_round_trip_returns_what_was_registered() -> None:
    client = new_client(CONFIDENTIAL, secret="s" * 43)
    body = to_hydra(client)
    # what Hydra answers: our body plus its own fields
    answered = {**body, "created_at": "2026-05-28T10:00:00Z", "jwks": {}, "audience": [], "owner": ""}
    managed = from_hydra(answered)
    assert managed.metadata == client.metadata
    assert managed.client_id_issued_at == client.client_id_issued_at
    assert managed.client_secret == "s" * 43
    assert is_managed(answered)


def test_hydra_client_without_the_marker_is_not_managed() -> None:
    assert not is_managed({"client_id": "x", "metadata": {}})
    assert not is_managed({"client_id": "x", "metadata": {METADATA_KEY: {"managed": False}}})
    assert not is_managed({"client_id": "x"})


# ------------------------------------------------------------------------------------- Keycloak


def test_keycloak_public_client() -> None:
    rep = to_keycloak(new_client(PUBLIC), REALM)
    assert rep["publicClient"] is True
    assert "secret" not in rep
    assert "clientAuthenticatorType" not in rep
    assert rep["standardFlowEnabled"] is True
    assert rep["implicitFlowEnabled"] is False
    assert rep["directAccessGrantsEnabled"] is False
    assert rep["consentRequired"] is True
    assert rep["fullScopeAllowed"] is False
    assert rep["serviceAccountsEnabled"] is False
    assert rep["attributes"]["pkce.code.challenge.method"] == "S256"
    assert rep["attributes"]["use.refresh.tokens"] == "true"
    assert rep["attributes"][MANAGED_ATTRIBUTE] == "true"
    assert "defaultClientScopes" not in rep  # no scope asked: Keycloak applies the realm defaults


def test_keycloak_confidential_client_uses_the_gateway_secret() -> None:
    rep = to_keycloak(new_client(CONFIDENTIAL, secret="s" * 43), REALM)
    assert rep["publicClient"] is False
    assert rep["clientAuthenticatorType"] == "client-secret"
    assert rep["secret"] == "s" * 43
    assert rep["name"] == "App"
    assert rep["attributes"]["logoUri"] == CONFIDENTIAL["logo_uri"]


def test_keycloak_loopback_ip_redirects_get_a_portless_copy() -> None:
    assert keycloak_redirect_uris(
        ["http://127.0.0.1:3000/callback", "http://localhost:3000/cb", "https://a.example:8443/cb", "http://[::1]:9/x"]
    ) == [
        "http://127.0.0.1:3000/callback",
        "http://127.0.0.1/callback",
        "http://localhost:3000/cb",
        "https://a.example:8443/cb",
        "http://[::1]:9/x",
        "http://[::1]/x",
    ]


def test_keycloak_scopes_keep_realm_defaults_and_add_requested_ones() -> None:
    default, optional, echo = scope_assignment("openid mcp offline_access nonexistent admin-api", REALM)
    assert default == list(REALM.default_default)
    assert optional == ["offline_access", "address", "mcp"]
    # "admin-api" exists in the realm but is no default: an anonymous client cannot attach it
    assert echo == "openid mcp offline_access"


def test_keycloak_without_scope_leaves_defaults_to_keycloak() -> None:
    assert scope_assignment(None, REALM) == (None, None, None)


def test_keycloak_registered_view_echoes_registration_with_known_scopes() -> None:
    client = new_client(CONFIDENTIAL, secret="s" * 43)
    view = registered_view(client, REALM)
    assert view.client_id == client.client_id
    assert view.client_secret == "s" * 43
    assert view.metadata.token_endpoint_auth_method == "client_secret_post"
    assert view.metadata.redirect_uris == CONFIDENTIAL["redirect_uris"]
    assert view.metadata.contacts == ["ops@example.com"]
    assert view.metadata.scope == "openid mcp offline_access"


def test_keycloak_read_back_hides_the_portless_copies() -> None:
    client = new_client(PUBLIC)
    rep = to_keycloak(client, REALM)
    rep["id"] = "internal-uuid"
    managed = from_keycloak(rep)
    assert managed.metadata.redirect_uris == PUBLIC["redirect_uris"]
    assert managed.client_secret is None
    assert managed.provider_ref == "internal-uuid"
    assert keycloak_is_managed(rep)
    assert not keycloak_is_managed({"clientId": "legacy", "attributes": {}})


def test_keycloak_jwks_goes_to_attributes() -> None:
    jwks = {
        "keys": [
            {
                "kty": "EC",
                "crv": "P-256",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
            }
        ]
    }
    rep = to_keycloak(
        new_client(
            {"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks}
        ),
        REALM,
    )
    assert rep["clientAuthenticatorType"] == "client-jwt"
    assert json.loads(rep["attributes"]["jwks.string"]) == jwks
    assert rep["attributes"]["use.jwks.string"] == "true"


@pytest.mark.parametrize(
    ("method", "authenticator"),
    [
        ("client_secret_basic", "client-secret"),
        ("client_secret_post", "client-secret"),
        ("client_secret_jwt", "client-secret-jwt"),
    ],
)
def test_keycloak_secret_methods(method: str, authenticator: str) -> None:
    rep = to_keycloak(
        new_client({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": method}, secret="x" * 43),
        REALM,
    )
    assert rep["clientAuthenticatorType"] == authenticator
    assert from_keycloak(rep).metadata.token_endpoint_auth_method == method


def test_hydra_storage_conflicts_are_transient_not_client_errors() -> None:
    from adapters.base import ProviderRejected, ProviderUnavailable
    from adapters.hydra.adapter import HydraAdapter

    conflict = HydraAdapter._rejection(
        400, {"error": "invalid_request", "error_description": "Unable to serialize access due to a concurrent update"}
    )
    assert isinstance(conflict, ProviderUnavailable)
    rejected = HydraAdapter._rejection(
        400, {"error": "invalid_redirect_uri", "error_description": "redirect_uris must be absolute"}
    )
    assert isinstance(rejected, ProviderRejected)
    assert rejected.field_name == "redirect_uris"
