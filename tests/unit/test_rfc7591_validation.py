"""RFC 7591 metadata rules: every rejection has the right error code and names the field."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, OAuthError
from gateway.oauth.metadata import parse_metadata
from gateway.policy import PolicySettings, Privilege, RegistrationPolicy, SameHostMode, apply_defaults, validate
from gateway.testing.mcp_client_bodies import MCP_CLIENT_BODIES

POLICY = RegistrationPolicy()
PUBLIC_NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}


def policy_from_server_metadata(
    metadata: dict[str, Any] | None, *, client_credentials_allowed: bool = False
) -> RegistrationPolicy:
    """The fixed rules against the provider's metadata, ``client_credentials`` given as a flag (the shape of the
    policy before :class:`PolicySettings`; inline ``jwks`` allowed, ``jwks_uri`` not)."""
    settings = PolicySettings(
        client_credentials=Privilege.ANYONE if client_credentials_allowed else Privilege.NEVER,
        jwks=Privilege.ANYONE,
        jwks_uri=Privilege.NEVER,
        same_host=SameHostMode.OFF,
        max_uri_length=2000,
        max_string_length=500,
    )
    return RegistrationPolicy.from_settings(settings, metadata)


def register(body: dict[str, Any], policy: RegistrationPolicy = POLICY) -> dict[str, Any]:
    return validate(parse_metadata(body), policy).registered()


# ------------------------------------------------------------------------------ accepted bodies

ACCEPTED = {
    **MCP_CLIENT_BODIES,
    "ipv6 loopback": {"redirect_uris": ["http://[::1]:8080/cb"], "token_endpoint_auth_method": "none"},
    "confidential post": {
        "redirect_uris": ["https://app.example.com/cb"],
        "token_endpoint_auth_method": "client_secret_post",
    },
    "private_key_jwt with jwks": {
        "redirect_uris": ["https://app.example.com/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {
            "keys": [
                {
                    "kty": "EC",
                    "crv": "P-256",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
                }
            ]
        },
    },
}


@pytest.mark.parametrize("body", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_real_client_bodies_are_accepted(body: dict[str, Any]) -> None:
    registered = register(body)
    assert registered["redirect_uris"] == body["redirect_uris"]
    assert registered["token_endpoint_auth_method"] == body.get("token_endpoint_auth_method", "client_secret_basic")


def test_rfc7591_defaults_apply_when_fields_are_omitted() -> None:
    registered = register({"redirect_uris": ["https://app.example.com/cb"]})
    assert registered["token_endpoint_auth_method"] == "client_secret_basic"
    assert registered["grant_types"] == ["authorization_code"]
    assert registered["response_types"] == ["code"]


def test_unknown_fields_and_client_chosen_client_id_are_dropped() -> None:
    registered = register({**PUBLIC_NATIVE, "client_id": "mine", "client_secret": "x" * 40, "frobnicate": 1})
    assert "client_id" not in registered
    assert "client_secret" not in registered
    assert "frobnicate" not in registered


def test_defaults_keep_explicit_values() -> None:
    metadata = apply_defaults(parse_metadata({**PUBLIC_NATIVE, "grant_types": ["authorization_code"]}))
    assert metadata.token_endpoint_auth_method == "none"


# ------------------------------------------------------------------------------ rejected bodies

REJECTED: dict[str, tuple[dict[str, Any], type[OAuthError], str]] = {
    "no redirect uris": ({"token_endpoint_auth_method": "none"}, InvalidRedirectUri, "redirect_uris: at least one"),
    "empty redirect uris": ({"redirect_uris": []}, InvalidRedirectUri, "redirect_uris: at least one"),
    "redirect uris not a list": (
        {"redirect_uris": "https://a.example/cb"},
        InvalidRedirectUri,
        "redirect_uris: must be an array of strings",
    ),
    "redirect uri not a string": ({"redirect_uris": [5]}, InvalidRedirectUri, "redirect_uris[0]: must be"),
    "fragment": ({"redirect_uris": ["https://a.example/cb#x"]}, InvalidRedirectUri, "fragment"),
    "bare fragment": ({"redirect_uris": ["https://a.example/cb#"]}, InvalidRedirectUri, "fragment"),
    "userinfo": ({"redirect_uris": ["https://client.test@attacker.test/cb"]}, InvalidRedirectUri, "userinfo"),
    "loopback userinfo": ({"redirect_uris": ["http://[::1]:80@attacker.test/cb"]}, InvalidRedirectUri, "userinfo"),
    "wildcard": ({"redirect_uris": ["https://*.example.com/cb"]}, InvalidRedirectUri, "wildcards"),
    "trailing wildcard": ({"redirect_uris": ["https://a.example/*"]}, InvalidRedirectUri, "wildcards"),
    "http non-loopback": ({"redirect_uris": ["http://a.example/cb"]}, InvalidRedirectUri, "'http' is allowed only"),
    "javascript": ({"redirect_uris": ["javascript:alert(1)"]}, InvalidRedirectUri, "scheme 'javascript'"),
    "data": ({"redirect_uris": ["data:text/html,hi"]}, InvalidRedirectUri, "scheme 'data'"),
    "file": ({"redirect_uris": ["file:///etc/passwd"]}, InvalidRedirectUri, "scheme 'file'"),
    "vbscript": ({"redirect_uris": ["vbscript:x"]}, InvalidRedirectUri, "scheme 'vbscript'"),
    "about": ({"redirect_uris": ["about:blank"]}, InvalidRedirectUri, "scheme 'about'"),
    "blob": ({"redirect_uris": ["blob:https://a.example/x"]}, InvalidRedirectUri, "scheme 'blob'"),
    "ws": ({"redirect_uris": ["ws://evil.com/"]}, InvalidRedirectUri, "scheme 'ws'"),
    "ftp": ({"redirect_uris": ["ftp://evil.com/"]}, InvalidRedirectUri, "scheme 'ftp'"),
    "view-source": ({"redirect_uris": ["view-source:https://x"]}, InvalidRedirectUri, "scheme 'view-source'"),
    "oob urn": ({"redirect_uris": ["urn:ietf:wg:oauth:2.0:oob"]}, InvalidRedirectUri, "scheme 'urn'"),
    "uppercase javascript": ({"redirect_uris": ["JAVASCRIPT:alert(1)"]}, InvalidRedirectUri, "scheme 'javascript'"),
    "backslash": ({"redirect_uris": ["https://a.example\\evil.com/cb"]}, InvalidRedirectUri, "backslashes"),
    "loopback lookalike": (
        {"redirect_uris": ["http://127.0.0.1.evil.com/cb"]},
        InvalidRedirectUri,
        "'http' is allowed only",
    ),
    "localhost lookalike": (
        {"redirect_uris": ["http://localhost.evil.com/cb"]},
        InvalidRedirectUri,
        "'http' is allowed only",
    ),
    "relative": ({"redirect_uris": ["/callback"]}, InvalidRedirectUri, "absolute URI"),
    "private-use for web": (
        {"redirect_uris": ["cursor://cb"], "application_type": "web"},
        InvalidRedirectUri,
        "not allowed for a 'web' client",
    ),
    "https without host": ({"redirect_uris": ["https:///cb"]}, InvalidRedirectUri, "must name a host"),
    "duplicate redirects": (
        {"redirect_uris": ["https://a.example/cb", "https://a.example/cb"]},
        InvalidRedirectUri,
        "duplicates",
    ),
    "implicit response type": (
        {**PUBLIC_NATIVE, "response_types": ["token"]},
        InvalidClientMetadata,
        "response_types: 'token' is not allowed",
    ),
    "hybrid response type": (
        {**PUBLIC_NATIVE, "response_types": ["code id_token"]},
        InvalidClientMetadata,
        "response_types: 'code id_token' is not allowed",
    ),
    "password grant": (
        {**PUBLIC_NATIVE, "grant_types": ["password"]},
        InvalidClientMetadata,
        "grant_types: 'password' is not allowed",
    ),
    "implicit grant": (
        {**PUBLIC_NATIVE, "grant_types": ["implicit"]},
        InvalidClientMetadata,
        "grant_types: 'implicit' is not allowed",
    ),
    "client credentials anonymous": (
        {"redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code", "client_credentials"]},
        InvalidClientMetadata,
        "'client_credentials' is not allowed for anonymous registration",
    ),
    "unknown grant": (
        {**PUBLIC_NATIVE, "grant_types": ["urn:example:magic"]},
        InvalidClientMetadata,
        "grant_types: 'urn:example:magic' is not supported",
    ),
    "code without authorization_code": (
        {**PUBLIC_NATIVE, "grant_types": ["refresh_token"], "response_types": ["code"]},
        InvalidClientMetadata,
        "must include 'authorization_code'",
    ),
    "refresh_token alone": (
        {**PUBLIC_NATIVE, "grant_types": ["refresh_token"]},
        InvalidClientMetadata,
        "'refresh_token' needs a grant",
    ),
    "unknown auth method": (
        {**PUBLIC_NATIVE, "token_endpoint_auth_method": "tls_client_auth"},
        InvalidClientMetadata,
        "token_endpoint_auth_method: 'tls_client_auth' is not supported",
    ),
    "jwks and jwks_uri": (
        {
            "redirect_uris": ["https://a.example/cb"],
            "jwks": {"keys": [{"kty": "EC"}]},
            "jwks_uri": "https://a.example/jwks",
        },
        InvalidClientMetadata,
        "jwks, jwks_uri",
    ),
    "private key in jwks": (
        {
            "redirect_uris": ["https://a.example/cb"],
            "jwks": {"keys": [{"kty": "RSA", "n": "x", "e": "AQAB", "d": "secret"}]},
        },
        InvalidClientMetadata,
        "private key material ['d']",
    ),
    "symmetric key in jwks": (
        {"redirect_uris": ["https://a.example/cb"], "jwks": {"keys": [{"kty": "oct", "k": "x"}]}},
        InvalidClientMetadata,
        "symmetric keys",
    ),
    "private_key_jwt without keys": (
        {"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "private_key_jwt"},
        InvalidClientMetadata,
        "needs jwks or jwks_uri",
    ),
    "jwks_uri anonymous": (
        {"redirect_uris": ["https://a.example/cb"], "jwks_uri": "https://a.example/jwks"},
        InvalidClientMetadata,
        "jwks_uri: not allowed for anonymous registration",
    ),
    "jwk without modulus": (
        {"redirect_uris": ["https://a.example/cb"], "jwks": {"keys": [{"kty": "RSA", "e": "AQAB"}]}},
        InvalidClientMetadata,
        "jwks.keys[0]: a RSA key needs 'n'",
    ),
    "jwk unknown curve": (
        {
            "redirect_uris": ["https://a.example/cb"],
            "jwks": {"keys": [{"kty": "EC", "crv": "P-999", "x": "a", "y": "b"}]},
        },
        InvalidClientMetadata,
        "curve 'P-999' is not supported",
    ),
    "jwk unknown kty": (
        {"redirect_uris": ["https://a.example/cb"], "jwks": {"keys": [{"kty": "XYZ"}]}},
        InvalidClientMetadata,
        "kty 'XYZ' is not supported",
    ),
    "jwk not base64url": (
        {"redirect_uris": ["https://a.example/cb"], "jwks": {"keys": [{"kty": "RSA", "n": "a+b/c==", "e": "AQAB"}]}},
        InvalidClientMetadata,
        "'n' must be base64url",
    ),
    "jwk for encryption": (
        {
            "redirect_uris": ["https://a.example/cb"],
            "jwks": {"keys": [{"kty": "RSA", "n": "abc", "e": "AQAB", "use": "enc"}]},
        },
        InvalidClientMetadata,
        "'use' must be 'sig'",
    ),
    "zone id loopback": ({"redirect_uris": ["http://[::1%25eth0]/cb"]}, InvalidRedirectUri, "zone-qualified"),
    "percent host": ({"redirect_uris": ["http://[::1%40evil.com]/cb"]}, InvalidRedirectUri, "zone-qualified"),
    "logo_uri javascript": ({**PUBLIC_NATIVE, "logo_uri": "javascript:alert(1)"}, InvalidClientMetadata, "logo_uri"),
    "client_name not a string": (
        {**PUBLIC_NATIVE, "client_name": 42},
        InvalidClientMetadata,
        "client_name: must be a string",
    ),
    "client_name too long": ({**PUBLIC_NATIVE, "client_name": "x" * 501}, InvalidClientMetadata, "client_name"),
    "bad scope": ({**PUBLIC_NATIVE, "scope": 'a "b'}, InvalidClientMetadata, "scope"),
    "application_type unknown": (
        {**PUBLIC_NATIVE, "application_type": "desktop"},
        InvalidClientMetadata,
        "application_type: must be one of 'web', 'native'",
    ),
    "post logout fragment": (
        {**PUBLIC_NATIVE, "post_logout_redirect_uris": ["https://a.example/#x"]},
        InvalidClientMetadata,
        "post_logout_redirect_uris[0]",
    ),
    "too many redirects": (
        {"redirect_uris": [f"https://a.example/cb{i}" for i in range(21)]},
        InvalidRedirectUri,
        "at most 20",
    ),
}


@pytest.mark.parametrize(("body", "error", "fragment"), REJECTED.values(), ids=REJECTED.keys())
def test_bad_metadata_is_rejected_with_the_rfc_error_naming_the_field(
    body: dict[str, Any], error: type[OAuthError], fragment: str
) -> None:
    with pytest.raises(error) as caught:
        register(body)
    assert type(caught.value) is error
    assert fragment in caught.value.description


def test_one_bad_uri_is_named_by_its_index() -> None:
    with pytest.raises(InvalidRedirectUri) as caught:
        register({"redirect_uris": ["https://ok.example/cb", "javascript:x"], "token_endpoint_auth_method": "none"})
    assert caught.value.description.startswith("redirect_uris[1]")


def test_policy_follows_the_providers_metadata() -> None:
    policy = policy_from_server_metadata(
        {
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        }
    )
    assert policy.grant_types == frozenset({"authorization_code", "refresh_token"})
    assert policy.token_endpoint_auth_methods == frozenset({"client_secret_basic", "private_key_jwt", "none"})
    post = {"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_post"}
    # negotiated to the secret method the provider has, and the response says so
    assert register(post, policy)["token_endpoint_auth_method"] == "client_secret_basic"
    with pytest.raises(InvalidClientMetadata, match="token_endpoint_auth_method: 'client_secret_post' is not supp"):
        register(post, dataclasses.replace(policy, negotiate_auth_method=False))
    # a grant the provider does not offer is trimmed when a usable one remains (VS Code lists the device grant)
    trimmed = register(
        {**PUBLIC_NATIVE, "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"]},
        policy,
    )
    assert trimmed["grant_types"] == ["authorization_code"]
    with pytest.raises(InvalidClientMetadata, match="grant_types: 'urn:ietf:params:oauth:grant-type:device_code'"):
        register({**PUBLIC_NATIVE, "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"]}, policy)


def test_client_credentials_can_be_allowed_explicitly() -> None:
    policy = policy_from_server_metadata(None, client_credentials_allowed=True)
    registered = register(
        {"redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code", "client_credentials"]},
        policy,
    )
    assert "client_credentials" in registered["grant_types"]


JWKS_POLICY = RegistrationPolicy(jwks_uri_allowed=True)


@pytest.mark.parametrize(
    ("jwks_uri", "fragment"),
    [
        ("http://a.example/jwks", "must use https"),
        ("https://127.0.0.1:9443/jwks", "must name a public host"),
        ("https://10.0.0.5/jwks", "must name a public host"),
        ("https://169.254.169.254/latest", "must name a public host"),
        ("https://[fd00::1]/jwks", "must name a public host"),
        ("https://localhost/jwks", "must name a public host"),
        ("https://metadata.internal/jwks", "must name a public host"),
        ("https://intranet/jwks", "must name a public host"),
    ],
)
def test_jwks_uri_when_allowed_must_be_public_https(jwks_uri: str, fragment: str) -> None:
    with pytest.raises(InvalidClientMetadata, match=fragment):
        register({"redirect_uris": ["https://a.example/cb"], "jwks_uri": jwks_uri}, JWKS_POLICY)


def test_jwks_uri_when_allowed_accepts_a_public_https_url() -> None:
    registered = register(
        {"redirect_uris": ["https://a.example/cb"], "jwks_uri": "https://keys.example.com/jwks"}, JWKS_POLICY
    )
    assert registered["jwks_uri"] == "https://keys.example.com/jwks"


def test_provider_length_limits_come_from_the_policy() -> None:
    keycloak_like = RegistrationPolicy(max_uri_length=255, max_string_length=255)
    with pytest.raises(InvalidRedirectUri, match="longer than 255"):
        register({"redirect_uris": ["https://a.example/" + "x" * 300]}, keycloak_like)
    with pytest.raises(InvalidClientMetadata, match="client_name: must be 1 to 255"):
        register({"redirect_uris": ["https://a.example/cb"], "client_name": "n" * 256}, keycloak_like)
    with pytest.raises(InvalidClientMetadata, match="client_uri: longer than 255"):
        register(
            {"redirect_uris": ["https://a.example/cb"], "client_uri": "https://a.example/" + "x" * 300}, keycloak_like
        )
