"""How the Keycloak adapter names what Keycloak answered (issue 8 items 10 and 11): a refused secret is not a
missing role, and "Realm does not exist" is a missing realm (503), never an unknown client (which became a 500)."""

from __future__ import annotations

import pytest
from keycloak.exceptions import KeycloakAuthenticationError, KeycloakGetError, KeycloakPostError

from adapters.base import (
    AdapterError,
    ClientNotFound,
    CredentialsRefused,
    IssuerMissing,
    ProviderAuthError,
    ProviderUnavailable,
    RoleMissing,
)
from adapters.keycloak.adapter import KeycloakAdapter, realm_missing


def translate(exc: Exception) -> AdapterError:
    assert isinstance(exc, (KeycloakAuthenticationError, KeycloakGetError, KeycloakPostError))
    return KeycloakAdapter._translate(exc, "create client")


def test_a_refused_secret_is_credentials_refused_and_does_not_blame_a_role() -> None:
    error = translate(
        KeycloakAuthenticationError(
            error_message=b'{"error":"unauthorized_client","error_description":"Invalid client or Invalid client '
            b'credentials"}',
            response_code=401,
        )
    )
    assert isinstance(error, CredentialsRefused)
    assert isinstance(error, ProviderAuthError)  # registrations: 503, as before
    assert "manage-clients" not in str(error)
    assert "DCR_KEYCLOAK__CLIENT_SECRET" in str(error)


def test_a_forbidden_admin_call_is_a_missing_role() -> None:
    error = translate(KeycloakPostError(error_message=b'{"error":"HTTP 403 Forbidden"}', response_code=403))
    assert isinstance(error, RoleMissing)
    assert isinstance(error, ProviderAuthError)
    assert "realm-management/manage-clients" in str(error)


@pytest.mark.parametrize("body", [b'{"error":"Realm does not exist"}', b'{"error":"Realm not found."}'])
def test_a_missing_realm_is_issuer_missing_a_temporary_unavailability(body: bytes) -> None:
    error = translate(KeycloakPostError(error_message=body, response_code=404))
    assert isinstance(error, IssuerMissing)
    assert isinstance(error, ProviderUnavailable)
    assert not isinstance(error, ClientNotFound)
    assert realm_missing(body)


def test_a_missing_client_stays_client_not_found() -> None:
    error = translate(KeycloakGetError(error_message=b'{"error":"Could not find client"}', response_code=404))
    assert isinstance(error, ClientNotFound)
