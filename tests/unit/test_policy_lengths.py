"""Lengths measured in the unit the provider's column counts, and display text shown as sent (issue 8 items 5, 8).

The table of what each built-in adapter declares is pinned here too; the real providers' behaviour at and past each
limit is proved in tests/integration/test_provider_lengths.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.adapter import KeycloakAdapter
from adapters.memory.adapter import MemoryAdapter
from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri
from gateway.oauth.lengths import LengthUnit, StoredLength
from gateway.oauth.metadata import parse_metadata
from gateway.policy import RegistrationPolicy, validate

EMOJI = "\U0001f600"
WEB = {"redirect_uris": ["https://app.example.com/cb"], "application_type": "web"}

KEYCLOAK_LIKE = RegistrationPolicy(
    stored_lengths=KeycloakAdapter.capabilities.stored_lengths,
    message_template_fields=KeycloakAdapter.capabilities.message_template_fields,
)
HYDRA_LIKE = RegistrationPolicy(
    stored_lengths=HydraAdapter.capabilities.stored_lengths,
    message_template_fields=HydraAdapter.capabilities.message_template_fields,
)


def register(body: dict[str, Any], policy: RegistrationPolicy) -> dict[str, Any]:
    return validate(parse_metadata(body), policy).registered()


@pytest.mark.parametrize(
    ("value", "characters", "utf16", "utf8"),
    [
        ("abc", 3, 3, 3),
        ("é", 1, 1, 2),
        ("€", 1, 1, 3),
        (EMOJI, 1, 2, 4),
        (EMOJI * 200, 200, 400, 800),
        ("a" + EMOJI + "é", 3, 4, 7),
    ],
)
def test_each_unit_counts_as_its_databases_do(value: str, characters: int, utf16: int, utf8: int) -> None:
    assert LengthUnit.CHARACTERS.measure(value) == characters
    assert LengthUnit.UTF16.measure(value) == utf16
    assert LengthUnit.UTF8.measure(value) == utf8


def test_keycloak_declares_its_columns() -> None:
    lengths = KeycloakAdapter.capabilities.stored_lengths
    assert lengths["client_name"].maximum == 255 and lengths["client_name"].unit is LengthUnit.UTF16
    assert lengths["client_uri"].maximum == 255 and lengths["client_uri"].unit is LengthUnit.UTF8
    assert lengths["redirect_uris"].maximum == 255 and lengths["redirect_uris"].unit is LengthUnit.UTF8
    assert "logo_uri" not in lengths  # an NCLOB attribute since Keycloak 20
    assert KeycloakAdapter.capabilities.message_template_fields == frozenset({"client_name"})
    assert HydraAdapter.capabilities.message_template_fields == frozenset()
    assert MemoryAdapter.capabilities.stored_lengths == {}


@pytest.mark.parametrize(
    ("body", "error", "description"),
    [
        (
            {"client_name": EMOJI * 128},
            InvalidClientMetadata,
            "client_name: 256 UTF-16 code units, longer than the 255 the authorization server stores "
            "(a character outside the Basic Multilingual Plane, such as an emoji, counts 2)",
        ),
        (
            {"client_uri": "https://app.example.com/" + EMOJI * 58},
            InvalidClientMetadata,
            "client_uri: 256 bytes of UTF-8, longer than the 255 the authorization server stores "
            "(a non-ASCII character counts 2 to 4)",
        ),
        (
            {"redirect_uris": ["https://app.example.com/cb", "https://app.example.com/" + "é" * 116]},
            InvalidRedirectUri,
            "redirect_uris[1]: 256 bytes of UTF-8, longer than the 255 the authorization server stores "
            "(a non-ASCII character counts 2 to 4)",
        ),
    ],
)
def test_a_value_past_the_providers_column_names_the_field_and_the_unit(
    body: dict[str, Any], error: type[Exception], description: str
) -> None:
    with pytest.raises(error) as refused:
        register({**WEB, **body}, KEYCLOAK_LIKE)
    assert str(refused.value) == description


def test_a_value_at_the_providers_column_limit_is_registered() -> None:
    body = {
        **WEB,
        "client_name": EMOJI * 127 + "a",
        "client_uri": "https://app.example.com/" + EMOJI * 57 + "abc",
        "redirect_uris": ["https://app.example.com/" + "é" * 115 + "a"],
        "logo_uri": "https://app.example.com/" + EMOJI * 1976,  # an attribute: only the policy's 2,000 characters
    }
    registered = register(body, KEYCLOAK_LIKE)
    assert registered["client_name"] == body["client_name"]
    assert registered["redirect_uris"] == body["redirect_uris"]
    assert registered["logo_uri"] == body["logo_uri"]


def test_hydra_keeps_the_policys_character_limits() -> None:
    assert register({**WEB, "client_name": EMOJI * 500}, HYDRA_LIKE)["client_name"] == EMOJI * 500
    with pytest.raises(InvalidClientMetadata, match="client_name: must be 1 to 500 characters"):
        register({**WEB, "client_name": EMOJI * 501}, HYDRA_LIKE)


def test_a_stored_length_over_the_policy_is_measured_in_its_unit() -> None:
    policy = RegistrationPolicy(stored_lengths={"software_id": StoredLength(10, LengthUnit.UTF8)})
    assert register({**WEB, "software_id": "abcdefghij"}, policy)["software_id"] == "abcdefghij"
    with pytest.raises(InvalidClientMetadata, match="software_id: 11 bytes of UTF-8"):
        register({**WEB, "software_id": "abcdefghi\u00e9"}, policy)


@pytest.mark.parametrize("name", ["${loginAccountTitle}", "Sign in to ${realm.displayName}", "x${", "${", "a ${b} c"])
def test_keycloak_refuses_message_templates_in_the_client_name(name: str) -> None:
    with pytest.raises(InvalidClientMetadata) as refused:
        register({**WEB, "client_name": name}, KEYCLOAK_LIKE)
    assert str(refused.value).startswith(f"client_name {name!r}: must not contain '${{'")


@pytest.mark.parametrize("name", ["$ {x}", "{x}", "$x", "price: 5$", "\uff04{x}"])
def test_text_that_is_no_template_is_kept(name: str) -> None:
    assert register({**WEB, "client_name": name}, KEYCLOAK_LIKE)["client_name"] == name


def test_providers_that_show_text_as_given_keep_it() -> None:
    assert register({**WEB, "client_name": "${loginAccountTitle}"}, HYDRA_LIKE)["client_name"] == "${loginAccountTitle}"


@pytest.mark.parametrize(
    ("body", "error", "description"),
    [
        ({"client_name": "half \ud83d emoji"}, InvalidClientMetadata, "client_name: not valid Unicode (a lone UTF-16"),
        ({"redirect_uris": ["https://app.example.com/\udc00"]}, InvalidRedirectUri, "redirect_uris[0]: not valid"),
        ({"contacts": ["ok@example.com", "x\ud800@example.com"]}, InvalidClientMetadata, "contacts[1]: not valid"),
        ({"software_version": "\udfff"}, InvalidClientMetadata, "software_version: not valid Unicode"),
    ],
)
def test_text_that_is_not_unicode_is_refused_on_every_provider(
    body: dict[str, Any], error: type[Exception], description: str
) -> None:
    for policy in (KEYCLOAK_LIKE, HYDRA_LIKE, RegistrationPolicy()):
        with pytest.raises(error) as refused:
            register({**WEB, **body}, policy)
        assert str(refused.value).startswith(description)
