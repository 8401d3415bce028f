"""The served document is the provider's, with the gateway's registration endpoint (RFC 8414 sections 2, 3.3)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.rfc8414.rewrite import UpstreamMetadataError, rewrite, serialize

KEYCLOAK = json.loads((Path(__file__).parent / "data" / "keycloak-openid-configuration.json").read_text())
ISSUER = KEYCLOAK["issuer"]
REGISTER = "https://auth.example.com/realms/mcp/register"

HYDRA: dict[str, Any] = {
    "issuer": "http://127.0.0.1:4444",
    "authorization_endpoint": "http://127.0.0.1:4444/oauth2/auth",
    "token_endpoint": "http://127.0.0.1:4444/oauth2/token",
    "jwks_uri": "http://127.0.0.1:4444/.well-known/jwks.json",
    "response_types_supported": ["code", "code id_token", "id_token", "token id_token", "token", "token id_token code"],
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "code_challenge_methods_supported": ["plain", "S256"],
}


def test_issuer_is_kept_byte_for_byte() -> None:
    upstream = {**HYDRA, "issuer": "https://Auth.Example.com:443/realms/mcp/"}
    served = rewrite(upstream, registration_endpoint=REGISTER)
    assert served["issuer"] == "https://Auth.Example.com:443/realms/mcp/"
    assert serialize(served).count(b'"issuer":"https://Auth.Example.com:443/realms/mcp/"') == 1


def test_registration_endpoint_becomes_the_gateways() -> None:
    served = rewrite(KEYCLOAK, registration_endpoint=REGISTER, expected_issuer=ISSUER)
    assert served["registration_endpoint"] == REGISTER


def test_registration_endpoint_is_added_when_the_provider_has_none() -> None:
    assert "registration_endpoint" not in HYDRA
    assert rewrite(HYDRA, registration_endpoint=REGISTER)["registration_endpoint"] == REGISTER


def test_mtls_alias_of_registration_endpoint_points_at_the_gateway_too() -> None:
    served = rewrite(KEYCLOAK, registration_endpoint=REGISTER)
    aliases = served["mtls_endpoint_aliases"]
    assert aliases["registration_endpoint"] == REGISTER
    assert aliases["token_endpoint"] == KEYCLOAK["mtls_endpoint_aliases"]["token_endpoint"]


def test_everything_else_is_left_as_the_provider_had_it() -> None:
    served = rewrite(KEYCLOAK, registration_endpoint=REGISTER)
    changed = {key for key in KEYCLOAK if served[key] != KEYCLOAK[key]}
    assert changed == {"registration_endpoint", "mtls_endpoint_aliases"}
    assert set(served) == set(KEYCLOAK)


def test_s256_is_kept_with_the_providers_other_methods() -> None:
    served = rewrite(HYDRA, registration_endpoint=REGISTER)
    assert served["code_challenge_methods_supported"] == ["plain", "S256"]


def test_s256_is_added_when_the_provider_lists_other_methods_only() -> None:
    served = rewrite({**HYDRA, "code_challenge_methods_supported": ["plain"]}, registration_endpoint=REGISTER)
    assert served["code_challenge_methods_supported"] == ["plain", "S256"]


@pytest.mark.parametrize("methods", [None, "S256", 7])
def test_s256_is_advertised_when_the_field_is_absent_or_malformed(methods: object) -> None:
    upstream = {key: value for key, value in HYDRA.items() if key != "code_challenge_methods_supported"}
    if methods is not None:
        upstream["code_challenge_methods_supported"] = methods
    served = rewrite(upstream, registration_endpoint=REGISTER)
    assert served["code_challenge_methods_supported"] == ["S256"]


def test_extra_fields_are_merged() -> None:
    served = rewrite(HYDRA, registration_endpoint=REGISTER, extra={"client_id_metadata_document_supported": True})
    assert served["client_id_metadata_document_supported"] is True


@pytest.mark.parametrize("field", ["issuer", "registration_endpoint"])
def test_extra_cannot_override_what_the_gateway_owns(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        rewrite(HYDRA, registration_endpoint=REGISTER, extra={field: "https://evil.example"})


def test_input_is_not_modified_and_shares_nothing_with_the_output() -> None:
    upstream = copy.deepcopy(KEYCLOAK)
    served = rewrite(upstream, registration_endpoint=REGISTER, extra={"x": {"y": [1]}})
    assert upstream == KEYCLOAK
    served["grant_types_supported"].append("mutated")
    served["mtls_endpoint_aliases"]["token_endpoint"] = "mutated"
    assert upstream == KEYCLOAK


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ([HYDRA], "JSON object"),
        ("{}", "JSON object"),
        (None, "JSON object"),
        ({"token_endpoint": "x"}, "issuer"),
        ({**HYDRA, "issuer": ""}, "issuer"),
        ({**HYDRA, "issuer": 42}, "issuer"),
    ],
)
def test_unusable_upstream_is_rejected(upstream: Any, message: str) -> None:
    with pytest.raises(UpstreamMetadataError, match=message):
        rewrite(upstream, registration_endpoint=REGISTER)


@pytest.mark.parametrize(
    "issuer",
    [
        "http://auth.example.com/realms/mcp",  # scheme differs (Keycloak not told about the proxy)
        "https://auth.example.com/realms/mcp/",  # trailing slash
        "https://auth.example.com/realms/other",
        "http://keycloak:8080/realms/mcp",  # internal host leaked
    ],
)
def test_upstream_with_a_different_issuer_is_rejected(issuer: str) -> None:
    with pytest.raises(UpstreamMetadataError, match=r"section 3\.3"):
        rewrite({**KEYCLOAK, "issuer": issuer}, registration_endpoint=REGISTER, expected_issuer=ISSUER)


def test_serialize_is_compact_stable_and_round_trips() -> None:
    served = rewrite(KEYCLOAK, registration_endpoint=REGISTER)
    body = serialize(served)
    reordered = dict(reversed(list(served.items())))
    assert serialize(reordered) == body
    assert b": " not in body
    assert b"\n" not in body
    assert json.loads(body) == served


def test_serialize_keeps_non_ascii_as_utf8() -> None:
    assert serialize({"issuer": "https://h", "service_documentation": "https://h/ü"}) == (
        '{"issuer":"https://h","service_documentation":"https://h/ü"}'.encode()
    )


def test_serialize_refuses_non_json_numbers() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        serialize({"issuer": "https://h", "x": float("nan")})


# ------------------------------------------------------------------- scopes_supported: what registration gets

KEYCLOAK_REGISTRABLE = frozenset(
    {"openid", "basic", "profile", "email", "roles", "web-origins", "acr"}
    | {"address", "phone", "offline_access", "organization", "microprofile-jwt", "mcp"}
)
"""Keycloak's realm defaults and default-optional scopes (plus openid): what a registration can attach."""


def test_scopes_supported_keeps_only_registrable_scopes_in_the_providers_order() -> None:
    served = rewrite(KEYCLOAK, registration_endpoint=REGISTER, registrable_scopes=KEYCLOAK_REGISTRABLE)
    assert "service_account" in KEYCLOAK["scopes_supported"]
    assert served["scopes_supported"] == [s for s in KEYCLOAK["scopes_supported"] if s != "service_account"]


def test_scopes_supported_is_limited_by_an_allow_list() -> None:
    served = rewrite(KEYCLOAK, registration_endpoint=REGISTER, registrable_scopes={"mcp", "email", "profile"})
    assert served["scopes_supported"] == ["openid", "profile", "email"]  # upstream order; mcp is not upstream


def test_openid_is_never_withheld_when_the_provider_advertises_it() -> None:
    served = rewrite(KEYCLOAK, registration_endpoint=REGISTER, registrable_scopes=frozenset())
    assert served["scopes_supported"] == ["openid"]


def test_openid_is_not_added_when_the_provider_does_not_advertise_it() -> None:
    upstream = {**HYDRA, "scopes_supported": ["offline", "mcp", "admin"]}
    served = rewrite(upstream, registration_endpoint=REGISTER, registrable_scopes={"openid", "mcp"})
    assert served["scopes_supported"] == ["mcp"]


def test_without_a_limit_scopes_supported_is_the_providers() -> None:
    served = rewrite(KEYCLOAK, registration_endpoint=REGISTER, registrable_scopes=None)
    assert served["scopes_supported"] == KEYCLOAK["scopes_supported"]


def test_omitted_scopes_supported_stays_omitted_under_a_limit() -> None:
    assert "scopes_supported" not in HYDRA
    served = rewrite(HYDRA, registration_endpoint=REGISTER, registrable_scopes={"openid"})
    assert "scopes_supported" not in served


def test_malformed_scopes_supported_is_left_alone_and_non_string_entries_are_dropped() -> None:
    malformed = {**HYDRA, "scopes_supported": "openid mcp"}
    not_a_list = rewrite(malformed, registration_endpoint=REGISTER, registrable_scopes={"mcp"})
    assert not_a_list["scopes_supported"] == "openid mcp"
    mixed = {**HYDRA, "scopes_supported": ["mcp", 7, None, "openid", "mcp"]}
    served = rewrite(mixed, registration_endpoint=REGISTER, registrable_scopes={"mcp"})
    assert served["scopes_supported"] == ["mcp", "openid"]


def test_limiting_scopes_does_not_modify_the_input() -> None:
    upstream = copy.deepcopy(KEYCLOAK)
    served = rewrite(upstream, registration_endpoint=REGISTER, registrable_scopes={"mcp"})
    assert upstream == KEYCLOAK
    served["scopes_supported"].append("x")
    assert upstream["scopes_supported"] == KEYCLOAK["scopes_supported"]


def test_extra_cannot_override_the_registrable_scopes() -> None:
    with pytest.raises(ValueError, match="scopes_supported"):
        rewrite(KEYCLOAK, registration_endpoint=REGISTER, extra={"scopes_supported": ["service_account"]})
