"""A fetched client ID metadata document to client metadata (draft-ietf-oauth-client-id-metadata-document section
4.1; MCP 2026-07-28 client-registration), over the documents real MCP clients publish and one rule at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cimd.document import client_metadata
from gateway.cimd.errors import DocumentRefused

DATA = Path(__file__).parent / "data" / "cimd"
URL = "https://app.example.com/oauth/client.json"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / name).read_text())
    return document


def base(**members: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "client_id": URL,
        "client_name": "Example",
        "redirect_uris": ["https://app.example.com/callback"],
    }
    document.update(members)
    return {key: value for key, value in document.items() if value is not ...}


def refused(document: dict[str, Any], url: str = URL, **kwargs: Any) -> DocumentRefused:
    with pytest.raises(DocumentRefused) as info:
        client_metadata(url, document, **kwargs)
    assert info.value.stage == "document"
    assert "\n" not in info.value.reason
    return info.value


# ------------------------------------------------------------------------------------------- real documents


def test_vscode() -> None:
    document = load("vscode.json")
    metadata = client_metadata(document["client_id"], document)
    assert metadata.client_name == "Visual Studio Code"
    assert metadata.redirect_uris == ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"]
    assert metadata.token_endpoint_auth_method == "none"
    assert metadata.grant_types == ["authorization_code", "refresh_token"]  # device_code dropped
    assert metadata.response_types == ["code"]
    assert metadata.application_type == "native"
    assert metadata.logo_uri == "https://code.visualstudio.com/assets/branding/code-stable.png"
    assert metadata.client_uri == "https://vscode.dev/product"


def test_vscode_keeps_device_code_where_the_provider_supports_it() -> None:
    document = load("vscode.json")
    supported = {"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"}
    metadata = client_metadata(document["client_id"], document, grant_types_supported=supported)
    assert metadata.grant_types == [
        "authorization_code",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
    ]


def test_claude_code() -> None:
    document = load("claude-code.json")
    metadata = client_metadata(document["client_id"], document)
    assert metadata.client_name == "Claude Code"
    assert metadata.redirect_uris == ["http://localhost/callback", "http://127.0.0.1/callback"]
    assert metadata.token_endpoint_auth_method == "none"
    assert metadata.grant_types == ["authorization_code", "refresh_token"]
    assert metadata.application_type is None


def test_claude_drops_the_jwt_bearer_grant() -> None:
    document = load("claude.json")
    metadata = client_metadata(document["client_id"], document)
    assert metadata.client_name == "Claude"
    assert metadata.redirect_uris == ["https://claude.ai/api/mcp/auth_callback"]
    assert metadata.grant_types == ["authorization_code", "refresh_token"]
    assert metadata.token_endpoint_auth_method == "none"


def test_chatgpt_is_a_public_client_by_its_rp_metadata_choices() -> None:
    """ChatGPT declares ``private_key_jwt`` and lists ``["none", "private_key_jwt"]`` as the methods it supports
    (OpenID Connect RP Metadata Choices 1.0); the list decides, and ``none`` is preferred."""
    document = load("chatgpt.json")
    metadata = client_metadata(document["client_id"], document)
    assert metadata.client_name == "ChatGPT"
    assert metadata.redirect_uris == ["https://chatgpt.com/connector_platform_oauth_redirect"]
    assert metadata.token_endpoint_auth_method == "none"
    assert metadata.jwks_uri is None  # not needed, and not kept, for a public client
    assert metadata.grant_types == ["authorization_code", "refresh_token"]


@pytest.mark.parametrize("name", ["vscode.json", "claude-code.json", "claude.json", "chatgpt.json"])
def test_real_documents_are_refused_under_another_url(name: str) -> None:
    error = refused(load(name), url=URL)
    assert "client_id" in error.reason


# ------------------------------------------------------------------------------------------------ client_id


@pytest.mark.parametrize(
    "client_id",
    [
        URL + "/",
        URL.replace("https", "HTTPS"),
        URL.replace("app.example.com", "APP.example.com"),
        URL.replace("app.example.com", "app.example.com:443"),
        URL.replace("client", "%63lient"),
        URL + "?",
        None,
        ...,
        42,
        [URL],
    ],
)
def test_client_id_must_equal_the_url_exactly(client_id: Any) -> None:
    error = refused(base(client_id=client_id))
    assert "client_id" in error.reason


# ---------------------------------------------------------------------------------------- required members


@pytest.mark.parametrize("client_name", [..., None, "", "   ", 3, ["x"]])
def test_client_name_is_required(client_name: Any) -> None:
    assert "client_name" in refused(base(client_name=client_name)).reason


@pytest.mark.parametrize("redirect_uris", [..., None, [], "https://app.example.com/cb", [3], {"a": 1}])
def test_redirect_uris_are_required(redirect_uris: Any) -> None:
    assert "redirect_uris" in refused(base(redirect_uris=redirect_uris)).reason


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("javascript:alert(1)", "scheme"),
        ("https://app.example.com/cb#frag", "fragment"),
        ("http://app.example.com/cb", "http"),
        ("https://user@app.example.com/cb", "userinfo"),
        ("https://*.example.com/cb", "wildcard"),
    ],
)
def test_unsafe_redirect_uris_are_refused(uri: str, words: str) -> None:
    error = refused(base(redirect_uris=["https://app.example.com/ok", uri]))
    assert "redirect_uris[1]" in error.reason
    assert words in error.reason


# ------------------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    "members", [{"client_secret": "s3cret-value"}, {"client_secret_expires_at": 0}, {"client_secret": None}]
)
def test_client_secrets_are_refused(members: dict[str, Any]) -> None:
    error = refused(base(**members))
    assert "client_secret" in error.reason
    assert "s3cret-value" not in error.reason


# ------------------------------------------------------------------------------------------ authentication

JWKS = {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y"}]}


def test_auth_method_defaults_to_none() -> None:
    assert client_metadata(URL, base()).token_endpoint_auth_method == "none"


def test_private_key_jwt_with_keys() -> None:
    with_uri = client_metadata(
        URL, base(token_endpoint_auth_method="private_key_jwt", jwks_uri="https://app.example.com/jwks.json")
    )
    assert with_uri.token_endpoint_auth_method == "private_key_jwt"
    assert with_uri.jwks_uri == "https://app.example.com/jwks.json"
    with_keys = client_metadata(URL, base(token_endpoint_auth_method="private_key_jwt", jwks=JWKS))
    assert with_keys.token_endpoint_auth_method == "private_key_jwt"
    assert with_keys.jwks == JWKS


def test_private_key_jwt_without_keys_is_refused() -> None:
    error = refused(base(token_endpoint_auth_method="private_key_jwt"))
    assert "private_key_jwt" in error.reason and "jwks" in error.reason


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "client_secret_jwt"])
def test_shared_secret_methods_are_refused(method: str) -> None:
    error = refused(base(token_endpoint_auth_method=method))
    assert method in error.reason


@pytest.mark.parametrize("method", ["tls_client_auth", "self_signed_tls_client_auth", "", 5, ["none"]])
def test_other_auth_methods_are_refused(method: Any) -> None:
    assert "token_endpoint_auth_method" in refused(base(token_endpoint_auth_method=method)).reason


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ({"token_endpoint_auth_methods_supported": ["none"]}, "none"),
        ({"token_endpoint_auth_methods_supported": ["private_key_jwt", "none"]}, "none"),
        ({"token_endpoint_auth_methods_supported": ["private_key_jwt"], "jwks": JWKS}, "private_key_jwt"),
        (
            {"token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"], "jwks": JWKS},
            "private_key_jwt",
        ),
        ({"token_endpoint_auth_methods_supported": ["tls_client_auth", "none"]}, "none"),
        # the list (RP Metadata Choices) decides over the single declared method
        ({"token_endpoint_auth_method": "private_key_jwt", "token_endpoint_auth_methods_supported": ["none"]}, "none"),
    ],
)
def test_rp_metadata_choices(members: dict[str, Any], expected: str) -> None:
    assert client_metadata(URL, base(**members)).token_endpoint_auth_method == expected


@pytest.mark.parametrize(
    "members",
    [
        {"token_endpoint_auth_methods_supported": ["private_key_jwt"]},  # no keys
        {"token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]},
        {"token_endpoint_auth_methods_supported": []},
        {"token_endpoint_auth_methods_supported": "none"},
        {"token_endpoint_auth_methods_supported": [1]},
        # a declared shared-secret method is refused even when the list offers another
        {"token_endpoint_auth_method": "client_secret_basic", "token_endpoint_auth_methods_supported": ["none"]},
    ],
)
def test_rp_metadata_choices_refusals(members: dict[str, Any]) -> None:
    assert "token_endpoint_auth_method" in refused(base(**members)).reason


# ---------------------------------------------------------------------------------- grant and response types


def test_grant_types_default_to_authorization_code() -> None:
    metadata = client_metadata(URL, base())
    assert metadata.grant_types == ["authorization_code"]
    assert metadata.response_types == ["code"]


@pytest.mark.parametrize(
    ("grant_types", "expected"),
    [
        (["authorization_code"], ["authorization_code"]),
        (["refresh_token", "authorization_code"], ["refresh_token", "authorization_code"]),
        (["authorization_code", "implicit", "password", "x-unknown"], ["authorization_code"]),
        (["authorization_code", "client_credentials"], ["authorization_code"]),
        (["authorization_code", "authorization_code"], ["authorization_code"]),
    ],
)
def test_unsupported_grant_types_are_dropped(grant_types: list[str], expected: list[str]) -> None:
    assert client_metadata(URL, base(grant_types=grant_types)).grant_types == expected


@pytest.mark.parametrize(
    "grant_types", [[], ["refresh_token"], ["urn:ietf:params:oauth:grant-type:jwt-bearer"], "authorization_code", [1]]
)
def test_authorization_code_must_remain(grant_types: Any) -> None:
    assert "grant_types" in refused(base(grant_types=grant_types)).reason


def test_response_types_are_filtered_to_code() -> None:
    assert client_metadata(URL, base(response_types=["code", "token", "code id_token"])).response_types == ["code"]
    assert "response_types" in refused(base(response_types=["token"])).reason
    assert "response_types" in refused(base(response_types="code")).reason


# ------------------------------------------------------------------------------------------- other members


def test_unknown_members_are_ignored() -> None:
    metadata = client_metadata(URL, base(dpop_bound_access_tokens=True, token_endpoint_auth_signing_alg="RS256"))
    assert "dpop_bound_access_tokens" not in metadata.registered()


@pytest.mark.parametrize(
    ("members", "field"),
    [
        ({"application_type": "desktop"}, "application_type"),
        ({"contacts": "a@example.com"}, "contacts"),
        ({"scope": ["openid"]}, "scope"),
        ({"jwks": "not-an-object", "token_endpoint_auth_method": "private_key_jwt"}, "jwks"),
        ({"logo_uri": 5}, "logo_uri"),
        ({"client_uri": "http://app.example.com/"}, "client_uri"),
        ({"logo_uri": "javascript:alert(1)"}, "logo_uri"),
        ({"jwks_uri": "http://app.example.com/jwks", "token_endpoint_auth_method": "private_key_jwt"}, "jwks_uri"),
        ({"tos_uri": "https://user@app.example.com/tos"}, "tos_uri"),
    ],
)
def test_members_the_registration_parser_refuses_are_refused_by_name(members: dict[str, Any], field: str) -> None:
    assert field in refused(base(**members)).reason


def test_display_members_are_kept() -> None:
    metadata = client_metadata(
        URL,
        base(
            client_uri="https://app.example.com/",
            logo_uri="https://cdn.example.net/logo.png",
            tos_uri="https://app.example.com/tos",
            policy_uri="https://app.example.com/privacy",
            contacts=["ops@example.com"],
            software_id="example-app",
            software_version="1.2.3",
            scope="openid offline_access",
        ),
    )
    assert metadata.logo_uri == "https://cdn.example.net/logo.png"
    assert metadata.contacts == ["ops@example.com"]
    assert metadata.scope == "openid offline_access"
    assert metadata.software_version == "1.2.3"
