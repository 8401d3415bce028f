"""Pure parts of RFC 7592: registration access tokens, the Bearer header, the update rules and the response."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.base import ManagedClient
from gateway.oauth.errors import InvalidClientMetadata
from gateway.oauth.metadata import ClientInformation, ClientMetadata
from gateway.registration.records import (
    AUTHENTICATED_KEY,
    CLIENT_SECRET_HASH_KEY,
    client_secret_matches,
    management_data,
    registration_client_uri,
    updated_data,
    was_authenticated,
)
from gateway.registration.tokens import (
    TOKEN_HASH_KEY,
    hash_secret,
    mint_registration_access_token,
    verify_registration_access_token,
)
from gateway.rfc7592.handler import (
    RESERVED_FIELDS,
    check_client_secret,
    check_replacement_fields,
    configuration_response,
    replacement,
)

# ----------------------------------------------------------------------------------------- tokens


def test_minted_token_is_256_bits_and_only_its_named_hash_is_stored() -> None:
    token, stored = mint_registration_access_token()
    assert len(token) == 43  # 32 bytes, base64url without padding
    assert stored.startswith("sha256:")
    assert token not in stored
    assert stored == hash_secret(token)
    assert verify_registration_access_token(token, stored)


def test_tokens_are_unique() -> None:
    assert len({mint_registration_access_token()[0] for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "stored",
    [None, "", 42, "sha256:", "md5:abc", "plain-token", {"sha256": "x"}],
    ids=["none", "empty", "int", "empty-hash", "other-scheme", "no-scheme", "dict"],
)
def test_a_missing_or_foreign_stored_value_never_matches(stored: Any) -> None:
    token, _ = mint_registration_access_token()
    assert verify_registration_access_token(token, stored) is False
    assert verify_registration_access_token("plain-token", stored) is False


def test_a_token_matches_only_its_own_hash() -> None:
    first, first_hash = mint_registration_access_token()
    second, second_hash = mint_registration_access_token()
    assert not verify_registration_access_token(first, second_hash)
    assert not verify_registration_access_token(second, first_hash)
    assert not verify_registration_access_token(first[:-1], first_hash)
    assert not verify_registration_access_token(first_hash, first_hash)  # the hash is not a token


def test_undecodable_presented_tokens_do_not_raise() -> None:
    _, stored = mint_registration_access_token()
    assert verify_registration_access_token("caf\udce9", stored) is False  # aiohttp's surrogateescape'd bytes
    assert verify_registration_access_token("tok€n", stored) is False
    assert verify_registration_access_token("x", "sha256:\udce9") is False


# ------------------------------------------------------------------------------------ update rules

CLIENT_ID = "3f0c7a52-1111-4c1e-9d7c-aaaaaaaaaaaa"


def managed(method: str = "client_secret_basic", **kwargs: Any) -> ManagedClient:
    fields: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "metadata": ClientMetadata(
            redirect_uris=["https://app.example/cb"], token_endpoint_auth_method=method, client_name="App"
        ),
        "client_id_issued_at": 1_700_000_000,
        **kwargs,
    }
    return ManagedClient(**fields)


@pytest.mark.parametrize("name", RESERVED_FIELDS)
def test_update_refuses_each_server_provisioned_field(name: str) -> None:
    with pytest.raises(InvalidClientMetadata) as raised:
        check_replacement_fields({"client_id": CLIENT_ID, name: "x"}, CLIENT_ID)
    assert raised.value.description.startswith(f"{name}: must not be sent in an update")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "client_id: required in an update"),
        ({"client_id": "someone-else"}, "client_id: must equal the client_id"),
        ({"client_id": None}, "client_id: must equal the client_id"),
        ({"client_id": [CLIENT_ID]}, "client_id: must equal the client_id"),
    ],
)
def test_update_requires_the_same_client_id(document: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidClientMetadata) as raised:
        check_replacement_fields(document, CLIENT_ID)
    assert raised.value.description.startswith(message)


def test_update_with_the_same_client_id_passes() -> None:
    check_replacement_fields({"client_id": CLIENT_ID, "redirect_uris": []}, CLIENT_ID)


def test_client_secret_is_checked_against_the_providers_secret_or_the_stored_hash() -> None:
    with_plaintext = managed(client_secret="s3cret-from-keycloak")
    assert client_secret_matches("s3cret-from-keycloak", with_plaintext)
    assert not client_secret_matches("other", with_plaintext)
    hash_only = managed(gateway_data={CLIENT_SECRET_HASH_KEY: hash_secret("s3cret-hashed")})  # Hydra
    assert client_secret_matches("s3cret-hashed", hash_only)
    assert not client_secret_matches("s3cret-hashed ", hash_only)
    assert not client_secret_matches("anything", managed())  # nothing to check against: no match
    public = managed("none", client_secret="stale", gateway_data={CLIENT_SECRET_HASH_KEY: hash_secret("stale")})
    assert not client_secret_matches("stale", public)  # a public client has no current secret


@pytest.mark.parametrize("presented", ["wrong", 123, None, ""])
def test_a_wrong_client_secret_is_refused(presented: Any) -> None:
    with pytest.raises(InvalidClientMetadata) as raised:
        check_client_secret({"client_secret": presented}, managed(client_secret="right"))
    assert raised.value.description.startswith("client_secret: does not match")


def test_the_current_client_secret_or_none_passes() -> None:
    check_client_secret({"client_secret": "right"}, managed(client_secret="right"))
    check_client_secret({}, managed(client_secret="right"))


def metadata(method: str, **extra: Any) -> ClientMetadata:
    return ClientMetadata(redirect_uris=["https://app.example/cb2"], token_endpoint_auth_method=method, **extra)


def test_replacement_keeps_id_issue_time_secret_and_other_gateway_data() -> None:
    current = managed(gateway_data={TOKEN_HASH_KEY: "sha256:old", "adopted_from": "shim", AUTHENTICATED_KEY: True})
    planned = replacement(current, metadata("client_secret_post"), rotate_registration_access_token=False)
    assert planned.client.client_id == CLIENT_ID
    assert planned.client.client_id_issued_at == 1_700_000_000
    assert planned.client.client_secret is None  # the provider keeps the current secret
    assert planned.client_secret is None
    assert planned.registration_access_token is None
    assert planned.client.gateway_data == current.gateway_data
    assert planned.client.metadata.client_name is None  # omitted: deleted


def test_replacement_rotates_the_token_when_configured() -> None:
    current = managed(gateway_data={TOKEN_HASH_KEY: "sha256:old"})
    planned = replacement(current, metadata("client_secret_basic"), rotate_registration_access_token=True)
    assert planned.registration_access_token is not None
    assert verify_registration_access_token(
        planned.registration_access_token, planned.client.gateway_data[TOKEN_HASH_KEY]
    )


def test_replacement_issues_a_secret_when_the_method_starts_using_one() -> None:
    planned = replacement(managed("none"), metadata("client_secret_basic"), rotate_registration_access_token=False)
    assert planned.client_secret is not None and len(planned.client_secret) == 43
    assert planned.client.client_secret == planned.client_secret
    assert planned.client.client_secret_expires_at == 0
    assert planned.client.gateway_data[CLIENT_SECRET_HASH_KEY] == hash_secret(planned.client_secret)


def test_replacement_drops_the_secret_when_the_method_stops_using_one() -> None:
    current = managed(client_secret="old", gateway_data={CLIENT_SECRET_HASH_KEY: hash_secret("old"), "k": 1})
    planned = replacement(current, metadata("none"), rotate_registration_access_token=False)
    assert planned.client_secret is None
    assert planned.client.client_secret is None
    assert planned.client.gateway_data == {"k": 1}


def test_updated_data_merges() -> None:
    current = {"x": 1, TOKEN_HASH_KEY: "a"}
    assert updated_data(current, token_hash=None, client_secret=None, secret_dropped=False) == current
    assert updated_data(current, token_hash="b", client_secret=None, secret_dropped=False)[TOKEN_HASH_KEY] == "b"
    assert current[TOKEN_HASH_KEY] == "a"  # not mutated


def test_management_data_records_privilege_and_hashes_only() -> None:
    data = management_data(token_hash="sha256:t", authenticated=True, client_secret="s")
    assert data == {TOKEN_HASH_KEY: "sha256:t", AUTHENTICATED_KEY: True, CLIENT_SECRET_HASH_KEY: hash_secret("s")}
    assert was_authenticated(managed(gateway_data=data))
    assert not was_authenticated(managed(gateway_data={AUTHENTICATED_KEY: "true"}))  # only a real true
    assert CLIENT_SECRET_HASH_KEY not in management_data(token_hash="t", authenticated=False, client_secret=None)


def test_registration_client_uri_appends_the_escaped_client_id() -> None:
    assert registration_client_uri("https://as.example/realms/mcp/register", "abc") == (
        "https://as.example/realms/mcp/register/abc"
    )
    assert registration_client_uri("https://as.example/register", "a/b c") == "https://as.example/register/a%2Fb%20c"


# -------------------------------------------------------------------------------------- responses


def test_read_response_without_a_returned_secret_still_states_its_expiry() -> None:
    """Hydra never returns secrets: the answer says the client has one (its expiry) without inventing it."""
    body = configuration_response(managed(), client_uri="https://as/register/x", registration_access_token="t")
    assert "client_secret" not in body
    assert body["client_secret_expires_at"] == 0
    assert body["registration_client_uri"] == "https://as/register/x"
    assert body["registration_access_token"] == "t"


def test_read_response_carries_the_providers_secret_only_for_secret_methods() -> None:
    body = configuration_response(managed(client_secret="kc"), client_uri="u", registration_access_token="t")
    assert body["client_secret"] == "kc"
    stale = managed("private_key_jwt", client_secret="stale")  # Keycloak keeps an unused secret
    body = configuration_response(stale, client_uri="u", registration_access_token="t")
    assert "client_secret" not in body
    assert "client_secret_expires_at" not in body


def test_management_fields_come_in_pairs() -> None:
    with pytest.raises(ValueError, match="go together"):
        ClientInformation(
            client_id="x", client_id_issued_at=0, metadata=ClientMetadata(), registration_access_token="t"
        )
