"""The registration policy engine (gateway.policy): configured policies, each rejection the RFC 7591 error
naming the field and the value, each negotiation visible in what is registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import ValidationError

from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, OAuthError
from gateway.oauth.lengths import LengthUnit, StoredLength
from gateway.oauth.metadata import parse_metadata
from gateway.policy import PolicySettings, RegistrationPolicy, check_fetched_uris, validate
from gateway.policy.settings import Privilege
from gateway.registration.service import Caller, IssuerContext, RegistrationSettings, validate_registration
from gateway.settings import Settings
from gateway.testing.mcp_client_bodies import MCP_CLIENT_BODIES

KEYCLOAK_DOCUMENT: dict[str, Any] = json.loads(
    (Path(__file__).parent / "data" / "keycloak-openid-configuration.json").read_text()
)
HYDRA_DOCUMENT: dict[str, Any] = {
    # what Hydra v2.3.0 advertises (no device grant, "none" listed, its default scopes)
    "grant_types_supported": ["authorization_code", "implicit", "client_credentials", "refresh_token"],
    "response_types_supported": ["code", "code id_token", "id_token", "token id_token", "token", "token id_token code"],
    "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "private_key_jwt", "none"],
    "scopes_supported": ["offline_access", "offline", "openid"],
}
PROVIDER_DOCUMENTS = {"keycloak": KEYCLOAK_DOCUMENT, "hydra": HYDRA_DOCUMENT}

EC_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}
WEB = {"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "none"}


def policy_for(
    document: dict[str, Any] | None = None, *, authenticated: bool = False, **settings: Any
) -> RegistrationPolicy:
    return RegistrationPolicy.from_settings(
        PolicySettings.model_validate(settings), document or {}, authenticated=authenticated
    )


def register(body: dict[str, Any], policy: RegistrationPolicy) -> dict[str, Any]:
    return validate(parse_metadata(body), policy).registered()


# ------------------------------------------------------ every MCP client registers with the defaults


@pytest.mark.parametrize("provider", PROVIDER_DOCUMENTS)
@pytest.mark.parametrize("body", MCP_CLIENT_BODIES.values(), ids=MCP_CLIENT_BODIES.keys())
def test_every_mcp_client_body_registers_with_the_default_policy(body: dict[str, Any], provider: str) -> None:
    policy = RegistrationPolicy.from_settings(PolicySettings(), PROVIDER_DOCUMENTS[provider])
    registered = register(body, policy)
    assert registered["redirect_uris"] == body["redirect_uris"]
    assert registered["token_endpoint_auth_method"] == body.get("token_endpoint_auth_method", "client_secret_basic")
    assert "authorization_code" in registered["grant_types"]
    assert registered["response_types"] == ["code"]
    assert registered.get("scope") == body.get("scope")
    assert registered.get("client_name") == body.get("client_name")


def test_default_policy_drops_a_client_uri_on_another_host_and_keeps_a_same_host_one() -> None:
    policy = RegistrationPolicy.from_settings(PolicySettings(), KEYCLOAK_DOCUMENT)
    inspector = register(MCP_CLIENT_BODIES["mcp inspector"], policy)
    assert "client_uri" not in inspector  # github.com is not where its redirects go (localhost)
    connector = register(MCP_CLIENT_BODIES["confidential connector, one https callback"], policy)
    assert connector["client_uri"] == "https://connector.example.com"


def test_default_policy_trims_the_device_grant_only_where_the_provider_lacks_it() -> None:
    vscode = MCP_CLIENT_BODIES["vs code"]
    on_hydra = register(vscode, RegistrationPolicy.from_settings(PolicySettings(), HYDRA_DOCUMENT))
    assert on_hydra["grant_types"] == ["authorization_code", "refresh_token"]
    on_keycloak = register(vscode, RegistrationPolicy.from_settings(PolicySettings(), KEYCLOAK_DOCUMENT))
    assert on_keycloak["grant_types"] == vscode["grant_types"]


# ------------------------------------------------------------------------- configured policies

CASES: dict[str, tuple[dict[str, Any], dict[str, Any], type[OAuthError], str]] = {
    # name: (policy settings, body, error, fragment of error_description)
    "web client, loopback redirect": (
        {},
        {**NATIVE, "application_type": "web"},
        InvalidRedirectUri,
        "redirect_uris[0] 'http://127.0.0.1:3000/callback': loopback redirect URIs are not allowed for a 'web'",
    ),
    "web client, https localhost": (
        {},
        {"redirect_uris": ["https://localhost/cb"], "application_type": "web"},
        InvalidRedirectUri,
        "loopback redirect URIs are not allowed for a 'web' client",
    ),
    "native client, http on a public host": (
        {},
        {"redirect_uris": ["http://app.example.com/cb"], "application_type": "native"},
        InvalidRedirectUri,
        "redirect_uris[0] 'http://app.example.com/cb': 'http' is allowed only for loopback hosts",
    ),
    "native client, denied private-use scheme": (
        {"redirect_uris": {"denied_schemes": ["cursor"]}},
        {"redirect_uris": ["cursor://cb/x"], "application_type": "native"},
        InvalidRedirectUri,
        "redirect_uris[0] 'cursor://cb/x': scheme 'cursor' is not allowed",
    ),
    "scheme allow-list": (
        {"redirect_uris": {"allowed_schemes": ["https"]}},
        NATIVE,
        InvalidRedirectUri,
        "redirect_uris[0] 'http://127.0.0.1:3000/callback': scheme 'http' is not allowed; allowed: ['https']",
    ),
    "host allow-list, lookalike": (
        {"redirect_uris": {"allowed_hosts": ["example.com"]}},
        {"redirect_uris": ["https://evil-example.com/cb"]},
        InvalidRedirectUri,
        "redirect_uris[0] 'https://evil-example.com/cb': host 'evil-example.com' is not allowed; allowed: "
        "['example.com']",
    ),
    "host allow-list, suffix trick": (
        {"redirect_uris": {"allowed_hosts": ["example.com"]}},
        {"redirect_uris": ["https://example.com.evil.net/cb"]},
        InvalidRedirectUri,
        "host 'example.com.evil.net' is not allowed",
    ),
    "host allow-list, loopback not listed": (
        {"redirect_uris": {"allowed_hosts": ["example.com"]}},
        NATIVE,
        InvalidRedirectUri,
        "host '127.0.0.1' is not allowed",
    ),
    "host allow-list applies to post-logout redirects": (
        {"redirect_uris": {"allowed_hosts": ["example.com"]}},
        {**WEB, "redirect_uris": ["https://example.com/cb"], "post_logout_redirect_uris": ["https://a.test/"]},
        InvalidClientMetadata,
        "post_logout_redirect_uris[0] 'https://a.test/': host 'a.test' is not allowed",
    ),
    "too many redirect uris": (
        {"redirect_uris": {"max_count": 2}},
        {"redirect_uris": [f"https://a.example/cb{i}" for i in range(3)]},
        InvalidRedirectUri,
        "redirect_uris: at most 2 URIs are allowed",
    ),
    "same host: reject": (
        {"same_host": "reject"},
        {**WEB, "logo_uri": "https://cdn.example.net/logo.png"},
        InvalidClientMetadata,
        "logo_uri 'https://cdn.example.net/logo.png': host 'cdn.example.net' is not the scheme and host of a "
        "redirect URI (RFC 7591 section 5)",
    ),
    "same host: scheme counts": (
        {"same_host": "reject"},
        {**NATIVE, "client_uri": "https://127.0.0.1/"},
        InvalidClientMetadata,
        "client_uri 'https://127.0.0.1/': host '127.0.0.1' is not the scheme and host",
    ),
    "public-only, key-based method": (
        {"token_endpoint_auth_methods": ["none"]},
        {**WEB, "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [EC_KEY]}},
        InvalidClientMetadata,
        "token_endpoint_auth_method: 'private_key_jwt' is not supported; allowed: ['none']",
    ),
    "confidential-only, public client": (
        {"token_endpoint_auth_methods": ["client_secret_basic"]},
        NATIVE,
        InvalidClientMetadata,
        "token_endpoint_auth_method: 'none' is not supported; allowed: ['client_secret_basic']",
    ),
    "no negotiation": (
        {"token_endpoint_auth_methods": ["none"], "negotiate_auth_method": False},
        {"redirect_uris": ["https://a.example/cb"]},
        InvalidClientMetadata,
        "token_endpoint_auth_method: 'client_secret_basic' is not supported; allowed: ['none']",
    ),
    "grant allow-list leaves nothing usable": (
        {"grant_types": ["authorization_code"]},
        {**NATIVE, "grant_types": ["urn:ietf:params:oauth:grant-type:device_code"], "response_types": []},
        InvalidClientMetadata,
        "grant_types: 'urn:ietf:params:oauth:grant-type:device_code' is not supported; allowed: ['authorization_code']",
    ),
    "grant allow-list, no trimming": (
        {"grant_types": ["authorization_code"], "trim_grant_types": False},
        {**NATIVE, "grant_types": ["authorization_code", "refresh_token"]},
        InvalidClientMetadata,
        "grant_types: 'refresh_token' is not supported; allowed: ['authorization_code']",
    ),
    "forbidden grant is never trimmed": (
        {},
        {**NATIVE, "grant_types": ["authorization_code", "password"]},
        InvalidClientMetadata,
        "grant_types: 'password' is not allowed (RFC 9700 section 2.4)",
    ),
    "implicit response type is never trimmed": (
        {},
        {**NATIVE, "response_types": ["code", "token"]},
        InvalidClientMetadata,
        "response_types: 'token' is not allowed (implicit and hybrid flows are disabled)",
    ),
    "strict scopes": (
        {"scopes": {"allowed": ["openid", "mcp"], "mode": "strict"}},
        {**NATIVE, "scope": "openid admin mcp root"},
        InvalidClientMetadata,
        "scope 'openid admin mcp root': 'admin', 'root' are not allowed; allowed: ['mcp', 'openid']",
    ),
    "anonymous client_credentials": (
        {"client_credentials": "authenticated"},
        {"redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code", "client_credentials"]},
        InvalidClientMetadata,
        "grant_types: 'client_credentials' is not allowed for anonymous registration",
    ),
    "anonymous jwks": (
        {},
        {**WEB, "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [EC_KEY]}},
        InvalidClientMetadata,
        "jwks: not allowed for anonymous registration",
    ),
    "anonymous jwks_uri": (
        {"jwks_uri": "authenticated"},
        {**WEB, "jwks_uri": "https://keys.example.com/jwks"},
        InvalidClientMetadata,
        "jwks_uri: not allowed for anonymous registration (the provider would fetch it)",
    ),
    "client name over the configured length": (
        {"max_string_length": 20},
        {**NATIVE, "client_name": "n" * 21},
        InvalidClientMetadata,
        "client_name: must be 1 to 20 characters",
    ),
    "redirect uri over the configured length": (
        {"max_uri_length": 64},
        {"redirect_uris": ["https://a.example/" + "x" * 60]},
        InvalidRedirectUri,
        "redirect_uris[0]: longer than 64 characters",
    ),
}


@pytest.mark.parametrize(("settings", "body", "error", "fragment"), CASES.values(), ids=CASES.keys())
def test_policy_rejections_name_the_field_and_value(
    settings: dict[str, Any], body: dict[str, Any], error: type[OAuthError], fragment: str
) -> None:
    with pytest.raises(OAuthError) as caught:
        register(body, policy_for(HYDRA_DOCUMENT, **settings))
    assert type(caught.value) is error
    assert caught.value.error == error.error
    assert fragment in caught.value.description


NEGOTIATED: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    # name: (policy settings, body, what is registered instead)
    "public-only answers client_secret_basic with none": (
        {"token_endpoint_auth_methods": ["none"]},
        {"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"},
        {"token_endpoint_auth_method": "none"},
    ),
    "public-only answers an omitted method with none": (
        {"token_endpoint_auth_methods": ["none"]},
        MCP_CLIENT_BODIES["python sdk"],
        {"token_endpoint_auth_method": "none"},
    ),
    "post-only answers basic with post": (
        {"token_endpoint_auth_methods": ["client_secret_post", "none"]},
        {"redirect_uris": ["https://a.example/cb"]},
        {"token_endpoint_auth_method": "client_secret_post"},
    ),
    "grant allow-list trims refresh_token": (
        {"grant_types": ["authorization_code"]},
        {**NATIVE, "grant_types": ["authorization_code", "refresh_token"]},
        {"grant_types": ["authorization_code"]},
    ),
    "lenient scopes drop unknown tokens": (
        {"scopes": {"allowed": ["openid", "mcp"]}},
        {**NATIVE, "scope": "openid admin mcp"},
        {"scope": "openid mcp"},
    ),
    "lenient scopes with nothing left register no scope (the provider's defaults apply)": (
        {"scopes": {"allowed": ["mcp"]}},
        {**NATIVE, "scope": "admin root"},
        {"scope": None},
    ),
    "openid is never withheld by a scope allow-list (discovery keeps advertising it)": (
        {"scopes": {"allowed": ["mcp"], "mode": "strict"}},
        {**NATIVE, "scope": "openid mcp"},
        {"scope": "openid mcp"},
    ),
    "advertised scopes join the allow-list": (
        {"scopes": {"allowed": ["mcp"], "include_advertised": True}},
        {**NATIVE, "scope": "openid offline_access mcp user"},
        {"scope": "openid offline_access mcp"},
    ),
    "same host: drop removes only the mismatching uris": (
        {"same_host": "drop"},
        {
            **WEB,
            "client_uri": "https://app.example.com/",
            "logo_uri": "https://cdn.example.net/logo.png",
            "tos_uri": "https://terms.example.com/tos",
            "policy_uri": "https://APP.example.com./privacy",
        },
        {
            "client_uri": "https://app.example.com/",
            "logo_uri": None,
            "tos_uri": None,
            "policy_uri": "https://APP.example.com./privacy",
        },
    ),
    "same host: off keeps them": (
        {"same_host": "off"},
        MCP_CLIENT_BODIES["mcp inspector"],
        {"client_uri": "https://github.com/modelcontextprotocol/inspector"},
    ),
    "web loopback when allowed": (
        {"redirect_uris": {"web_loopback": True}},
        {**NATIVE, "application_type": "web"},
        {"redirect_uris": NATIVE["redirect_uris"]},
    ),
    "host allow-list accepts a subdomain, any case, IDNA": (
        {"redirect_uris": {"allowed_hosts": ["example.com", "bücher.example"]}},
        {"redirect_uris": ["https://Login.EXAMPLE.com./cb", "https://www.xn--bcher-kva.example/cb"]},
        {"redirect_uris": ["https://Login.EXAMPLE.com./cb", "https://www.xn--bcher-kva.example/cb"]},
    ),
}


@pytest.mark.parametrize(("settings", "body", "expected"), NEGOTIATED.values(), ids=NEGOTIATED.keys())
def test_policy_negotiates_and_the_registration_says_so(
    settings: dict[str, Any], body: dict[str, Any], expected: dict[str, Any]
) -> None:
    registered = register(body, policy_for(HYDRA_DOCUMENT, **settings))
    for name, value in expected.items():
        assert registered.get(name) == value, name


def test_a_public_client_never_gets_a_secret_method_by_negotiation() -> None:
    policy = policy_for(HYDRA_DOCUMENT, token_endpoint_auth_methods=["client_secret_basic", "client_secret_post"])
    with pytest.raises(InvalidClientMetadata, match="'none' is not supported"):
        register(NATIVE, policy)


def test_the_provider_limits_what_the_settings_allow() -> None:
    name_column = StoredLength(255, LengthUnit.UTF16)
    policy = RegistrationPolicy.from_settings(
        PolicySettings(token_endpoint_auth_methods=("client_secret_post", "client_secret_jwt")),
        {"token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"]},
        stored_lengths={"client_name": name_column},
    )
    assert policy.token_endpoint_auth_methods == frozenset({"client_secret_post"})
    assert policy.stored_lengths == {"client_name": name_column}


# ------------------------------------------------------------------------------------- privileges


@pytest.mark.parametrize(
    ("privilege", "anonymous", "authenticated"),
    [("never", False, False), ("authenticated", False, True), ("anyone", True, True)],
)
def test_privileged_metadata_follows_the_callers_authentication(
    privilege: str, anonymous: bool, authenticated: bool
) -> None:
    settings = {"client_credentials": privilege, "jwks": privilege, "jwks_uri": privilege}
    for caller_authenticated, expected in ((False, anonymous), (True, authenticated)):
        policy = policy_for(KEYCLOAK_DOCUMENT, authenticated=caller_authenticated, **settings)
        assert policy.client_credentials_allowed is expected
        assert policy.jwks_allowed is expected
        assert policy.jwks_uri_allowed is expected
        assert ("client_credentials" in policy.grant_types) is expected


def test_authenticated_caller_registers_keys_and_client_credentials() -> None:
    policy = policy_for(KEYCLOAK_DOCUMENT, authenticated=True, client_credentials="authenticated")
    registered = register(
        {
            "redirect_uris": ["https://a.example/cb"],
            "grant_types": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [EC_KEY]},
        },
        policy,
    )
    assert registered["grant_types"] == ["authorization_code", "client_credentials"]
    assert registered["jwks"] == {"keys": [EC_KEY]}


def test_privilege_refused_to_an_authenticated_caller_says_it_is_the_policy() -> None:
    with pytest.raises(InvalidClientMetadata, match="jwks_uri: not allowed by this server's registration policy"):
        register({**WEB, "jwks_uri": "https://keys.example.com/jwks"}, policy_for(authenticated=True))


@pytest.mark.parametrize(
    "key",
    [
        {**EC_KEY, "d": "private"},
        {"kty": "RSA", "n": "abc", "e": "AQAB", "p": "x", "q": "y"},
        {"kty": "oct", "k": "c2VjcmV0"},
    ],
)
def test_private_and_symmetric_keys_are_refused_even_when_keys_are_allowed(key: dict[str, Any]) -> None:
    with pytest.raises(InvalidClientMetadata, match=r"jwks\.keys\[0\]: (private key material|symmetric keys)"):
        register({**WEB, "jwks": {"keys": [key]}}, policy_for(authenticated=True))


# ---------------------------------------------------------------------------- jwks_uri resolution


def resolver_of(table: dict[str, list[str]]) -> Any:
    async def resolve(host: str) -> list[str]:
        if host not in table:
            raise OSError(f"{host}: Name or service not known")
        return table[host]

    return resolve


RESOLVED = {
    "keys.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "rebind.example.com": ["93.184.215.14", "127.0.0.1"],
    "metadata.example.com": ["169.254.169.254"],
    "intranet.example.com": ["10.1.2.3"],
    "ula.example.com": ["fd12:3456::1"],
    "mapped.example.com": ["::ffff:192.168.0.1"],
    "cgnat.example.com": ["100.64.1.1"],
    "empty.example.com": [],
}


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("rebind.example.com", "resolves to a loopback, private, link-local or reserved address"),
        ("metadata.example.com", "resolves to a loopback"),
        ("intranet.example.com", "resolves to a loopback"),
        ("ula.example.com", "resolves to a loopback"),
        ("mapped.example.com", "resolves to a loopback"),
        ("cgnat.example.com", "resolves to a loopback"),
        ("empty.example.com", "does not resolve"),
        ("nxdomain.example.com", "does not resolve"),
    ],
)
async def test_jwks_uri_must_resolve_to_public_addresses_only(host: str, fragment: str) -> None:
    metadata = parse_metadata({**WEB, "jwks_uri": f"https://{host}/jwks"})
    with pytest.raises(InvalidClientMetadata) as caught:
        await check_fetched_uris(metadata, resolver_of(RESOLVED))
    assert caught.value.description.startswith(f"jwks_uri 'https://{host}/jwks': host '{host}'")
    assert fragment in caught.value.description


async def test_jwks_uri_on_a_public_host_passes_and_nothing_else_is_resolved() -> None:
    metadata = parse_metadata({**WEB, "jwks_uri": "https://keys.example.com/jwks"})
    assert await check_fetched_uris(metadata, resolver_of(RESOLVED)) is metadata
    without = parse_metadata(WEB)
    assert await check_fetched_uris(without, resolver_of({})) is without


class _Cached:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document


class _Discovery:
    def __init__(self, document: dict[str, Any]) -> None:
        self._cached = _Cached(document)

    async def get(self) -> _Cached:
        return self._cached


def _issuer(document: dict[str, Any]) -> IssuerContext:
    return IssuerContext(
        key="default",
        path="",
        issuer="https://auth.example.com",
        registration_endpoint="https://auth.example.com/register",
        discovery=cast(Any, _Discovery(document)),
    )


async def test_validate_registration_runs_the_configured_policy_for_the_caller_and_resolves_jwks_uri() -> None:
    """The seam RFC 7591 registration and RFC 7592 update share: settings -> policy -> rules -> resolution."""
    settings = RegistrationSettings(
        max_body_bytes=65536,
        stored_lengths={"redirect_uris": StoredLength(255, LengthUnit.UTF8)},
        policy=PolicySettings(jwks_uri=Privilege.AUTHENTICATED, token_endpoint_auth_methods=("private_key_jwt",)),
        resolver=resolver_of(RESOLVED),
    )
    body = {"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "private_key_jwt"}
    issuer = _issuer(KEYCLOAK_DOCUMENT)
    good = {**body, "jwks_uri": "https://keys.example.com/jwks"}
    with pytest.raises(InvalidClientMetadata, match="jwks_uri: not allowed for anonymous registration"):
        await validate_registration(good, issuer=issuer, settings=settings)
    authenticated = Caller(authenticated=True)
    metadata = await validate_registration(good, issuer=issuer, settings=settings, caller=authenticated)
    assert metadata.jwks_uri == "https://keys.example.com/jwks"
    with pytest.raises(InvalidClientMetadata, match="resolves to a loopback"):
        await validate_registration(
            {**body, "jwks_uri": "https://rebind.example.com/jwks"},
            issuer=issuer,
            settings=settings,
            caller=authenticated,
        )
    with pytest.raises(InvalidRedirectUri, match="longer than the 255"):  # the provider's limit from the settings
        await validate_registration(
            {**good, "redirect_uris": ["https://app.example.com/" + "x" * 300]},
            issuer=issuer,
            settings=settings,
            caller=authenticated,
        )


# ------------------------------------------------------------------------------------ configuration


def test_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_POLICY__TOKEN_ENDPOINT_AUTH_METHODS", '["none"]')
    monkeypatch.setenv("DCR_POLICY__SCOPES__ALLOWED", '["openid","mcp"]')
    monkeypatch.setenv("DCR_POLICY__SCOPES__MODE", "strict")
    monkeypatch.setenv("DCR_POLICY__SAME_HOST", "reject")
    monkeypatch.setenv("DCR_POLICY__REDIRECT_URIS__ALLOWED_HOSTS", '["Example.COM.", "bücher.example"]')
    monkeypatch.setenv("DCR_POLICY__JWKS_URI", "authenticated")
    policy = Settings().policy
    assert policy.token_endpoint_auth_methods == ("none",)
    assert policy.scopes.allowed == ("openid", "mcp")
    assert policy.scopes.mode == "strict"
    assert policy.same_host == "reject"
    assert policy.redirect_uris.allowed_hosts == ("example.com", "xn--bcher-kva.example")
    assert policy.jwks_uri is Privilege.AUTHENTICATED


def test_policy_comes_from_a_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[policy]\ntoken_endpoint_auth_methods = ["none"]\n'
        '[policy.redirect_uris]\nallowed_schemes = ["https", "http", "cursor"]\n'
        '[policy.scopes]\nallowed = ["mcp"]\nmode = "lenient"\n'
    )
    monkeypatch.setenv("DCR_CONFIG_FILE", str(config))
    policy = Settings().policy
    assert policy.token_endpoint_auth_methods == ("none",)
    assert policy.redirect_uris.allowed_schemes == ("https", "http", "cursor")
    assert policy.scopes.allowed == ("mcp",)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"grant_types": ["password"]}, "are not grant types the gateway registers"),
        ({"token_endpoint_auth_methods": ["tls_client_auth"]}, "are not auth methods the gateway registers"),
        ({"token_endpoint_auth_methods": []}, "at least one token endpoint auth method"),
        ({"redirect_uris": {"allowed_schemes": ["javascript"]}}, "can never be redirect URI schemes"),
        ({"redirect_uris": {"allowed_schemes": ["not a scheme"]}}, "is not a URI scheme"),
        ({"redirect_uris": {"allowed_hosts": ["*.example.com"]}}, "without wildcards"),
        ({"redirect_uris": {"allowed_hosts": ["exa mple.com"]}}, "without wildcards"),
        ({"redirect_uris": {"allowed_hosts": ["-bad-.example"]}}, "not a valid host name"),
        ({"same_host": "sometimes"}, "same_host"),
        ({"jwks_uri": "always"}, "jwks_uri"),
        ({"scopes": {"mode": "loose"}}, "scopes.mode"),
        ({"frobnicate": True}, "frobnicate"),
    ],
)
def test_bad_policy_settings_stop_the_start(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PolicySettings.model_validate(settings)
    assert fragment in str(caught.value)
