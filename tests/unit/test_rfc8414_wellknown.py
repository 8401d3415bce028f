"""Well-known URL forms: RFC 8414 section 3.1 insertion, OIDC Discovery section 4 appending."""

from __future__ import annotations

import pytest

from gateway.rfc8414.wellknown import DocumentKind, discovery_locations, is_discovery_path, well_known_url


@pytest.mark.parametrize(
    ("issuer", "suffix", "expected"),
    [
        (
            "https://h/realms/mcp",
            "oauth-authorization-server",
            "https://h/.well-known/oauth-authorization-server/realms/mcp",
        ),
        ("https://h/realms/mcp/", "openid-configuration", "https://h/.well-known/openid-configuration/realms/mcp"),
        ("https://h", "oauth-authorization-server", "https://h/.well-known/oauth-authorization-server"),
        ("https://h/", "oauth-authorization-server", "https://h/.well-known/oauth-authorization-server"),
        ("http://127.0.0.1:4444", "openid-configuration", "http://127.0.0.1:4444/.well-known/openid-configuration"),
        (
            "https://H.example:8443/realms/MCP",
            "/.well-known/oauth-authorization-server",
            "https://H.example:8443/.well-known/oauth-authorization-server/realms/MCP",
        ),
    ],
)
def test_well_known_url_inserts_suffix_between_host_and_path(issuer: str, suffix: str, expected: str) -> None:
    assert well_known_url(issuer, suffix) == expected


@pytest.mark.parametrize("issuer", ["https://h/realms/mcp?x=1", "https://h/realms/mcp#f", "/realms/mcp", ""])
def test_well_known_url_refuses_what_is_not_an_issuer(issuer: str) -> None:
    with pytest.raises(ValueError, match="issuer"):
        well_known_url(issuer, "oauth-authorization-server")


def test_keycloak_realm_is_served_at_every_probed_location() -> None:
    assert discovery_locations("/realms/mcp") == {
        "/.well-known/oauth-authorization-server/realms/mcp": DocumentKind.OAUTH,
        "/.well-known/openid-configuration/realms/mcp": DocumentKind.OPENID,
        "/realms/mcp/.well-known/openid-configuration": DocumentKind.OPENID,
        "/realms/mcp/.well-known/oauth-authorization-server": DocumentKind.OAUTH,
    }


def test_locations_follow_the_mcp_2025_11_25_probe_order() -> None:
    assert list(discovery_locations("/realms/mcp"))[:3] == [
        "/.well-known/oauth-authorization-server/realms/mcp",
        "/.well-known/openid-configuration/realms/mcp",
        "/realms/mcp/.well-known/openid-configuration",
    ]


@pytest.mark.parametrize("issuer_path", ["", "/"])
def test_root_issuer_has_the_two_root_forms(issuer_path: str) -> None:
    assert discovery_locations(issuer_path) == {
        "/.well-known/oauth-authorization-server": DocumentKind.OAUTH,
        "/.well-known/openid-configuration": DocumentKind.OPENID,
    }


def test_terminating_slash_of_issuer_path_is_dropped() -> None:
    assert discovery_locations("/realms/mcp/") == discovery_locations("/realms/mcp")


def test_locations_agree_with_well_known_url() -> None:
    issuer = "https://auth.example.com/realms/mcp"
    for kind in DocumentKind:
        inserted = well_known_url(issuer, kind.value).removeprefix("https://auth.example.com")
        assert discovery_locations("/realms/mcp")[inserted] is kind


def test_issuer_path_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="start with '/'"):
        discovery_locations("realms/mcp")


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/realms/other",
        "/.well-known/openid-configuration/realms/other",
        "/realms/other/.well-known/openid-configuration",
        "/realms/other/.well-known/oauth-authorization-server",
        "/realms/other/.well-known/openid-configuration/",
    ],
)
def test_discovery_paths_of_any_issuer_are_recognized(path: str) -> None:
    assert is_discovery_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/jwks.json",
        "/.well-known/oauth-protected-resource",
        "/.well-known/openid-configurationx",
        "/realms/mcp/.well-known/openid-configuration.json",
        "/realms/mcp/protocol/openid-connect/auth",
        "/x.well-known/openid-configuration",
        "/",
    ],
)
def test_other_paths_are_not_discovery_paths(path: str) -> None:
    assert not is_discovery_path(path)
