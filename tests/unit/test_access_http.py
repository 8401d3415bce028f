"""Access control at the registration endpoint, through the real app with the in-memory adapter: every mode,
the Bearer rules of RFC 6750 section 2.1, use counts of signed tokens, software statement precedence, the
effect on privileged metadata, and that nothing is created and no token is logged when access is refused.
What the real providers do with an authenticated registration is proved in tests/integration/test_access.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gateway_factory import ISSUER, ISSUER_PATH, PUBLIC, REGISTER, Gateways
from joserfc.jwk import OctKey
from test_access_tokens import HS256_SECRET, ec_key, jwks, sign

from adapters.memory.adapter import MemoryAdapter
from gateway.access.control import RegistrationAccess
from gateway.access.settings import IssuerAccessSettings
from gateway.access.tokens import InitialAccessToken, hash_initial_access_token, mint_initial_access_token
from gateway.app import create_app
from gateway.oauth.errors import TemporarilyUnavailable
from gateway.settings import Settings

NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}
SERVICE = {
    "client_name": "batch job",
    "grant_types": ["client_credentials"],
    "response_types": [],
    "token_endpoint_auth_method": "client_secret_basic",
}
STATIC_TOKEN = "static-initial-access-token-0123456789"
STATEMENT_ISSUER = "https://statements.example.com"
STATEMENT_KEY = ec_key("statements-1")
HS256 = OctKey.import_key(HS256_SECRET.encode())

Factory = Callable[..., Awaitable[tuple[TestClient[Any, Any], MemoryAdapter]]]


def tokens_config(**extra: Any) -> dict[str, Any]:
    return {"static_token_hashes": [hash_initial_access_token(STATIC_TOKEN)], "hs256_secret": HS256_SECRET, **extra}


def statements_config() -> dict[str, Any]:
    return {"trusted_issuers": [{"issuer": STATEMENT_ISSUER, "jwks": jwks(STATEMENT_KEY)}]}


def access_config(mode: str = "open", **sections: Any) -> dict[str, Any]:
    return {
        "mode": mode,
        "initial_access_tokens": tokens_config(),
        "software_statements": statements_config(),
        **sections,
    }


def signed_token(audience: str = ISSUER, **claims: Any) -> str:
    return mint_initial_access_token(HS256, "HS256", audience=audience, **{"expires_in": 600, **claims})


def software_statement(**claims: Any) -> str:
    return sign({"iss": STATEMENT_ISSUER, "software_id": "sw-attested", **claims}, STATEMENT_KEY, "ES256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def provider_document() -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


@pytest.fixture
def make_gateway(gateways: Gateways) -> Factory:
    async def factory(**overrides: Any) -> tuple[TestClient[Any, Any], MemoryAdapter]:
        overrides.setdefault("limits", {"enabled": False})
        return await gateways.start(provider_document(), **overrides)

    return factory


async def assert_invalid_token(response: Any, adapter: MemoryAdapter, *, challenge_error: bool = True) -> str:
    """401 ``invalid_token`` (RFC 6750 section 3.1) with its challenge, RFC-shaped body, nothing created."""
    assert response.status == 401
    expected = 'Bearer error="invalid_token"' if challenge_error else "Bearer"
    assert response.headers["WWW-Authenticate"] == expected
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["error"] == "invalid_token"
    assert adapter.clients["default"] == {}
    description: str = body["error_description"]
    return description


# ------------------------------------------------------------------------------------------ open mode


async def test_open_by_default_and_an_unconfigured_credential_is_ignored(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, bearer("whatever")):
        response = await client.post(REGISTER, json=NATIVE, headers=headers)
        assert response.status == 201, await response.text()
    assert len(adapter.clients["default"]) == 3


async def test_open_mode_verifies_a_presented_token_and_never_downgrades_a_bad_one(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("open"))
    assert (await client.post(REGISTER, json=NATIVE)).status == 201
    assert (await client.post(REGISTER, json=NATIVE, headers=bearer(STATIC_TOKEN))).status == 201
    adapter.clients["default"].clear()
    response = await client.post(REGISTER, json=NATIVE, headers=bearer("not-the-token"))
    assert "not valid" in await assert_invalid_token(response, adapter)


@pytest.mark.parametrize(
    "authorization",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer  ", "Token abc", "bearer\tabc", "Bearer \u00e9t\u00e9"],
)
async def test_a_malformed_authorization_header_is_401_never_500(make_gateway: Factory, authorization: str) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    response = await client.post(REGISTER, json=NATIVE, headers={"Authorization": authorization})
    assert "RFC 6750 section 2.1" in await assert_invalid_token(response, adapter)


async def test_two_authorization_headers_are_refused(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    headers = [("Authorization", f"Bearer {STATIC_TOKEN}"), ("Authorization", f"Bearer {STATIC_TOKEN}")]
    response = await client.post(REGISTER, json=NATIVE, headers=headers)
    # RFC 6750 section 3.1: ambiguity is invalid_request (400), as at the RFC 7592 endpoint (test_oauth_bearer.py)
    assert response.status == 400
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_request"'
    assert "single Authorization header" in (await response.json())["error_description"]
    assert adapter.clients["default"] == {}


# ------------------------------------------------------------------------------ initial_access_token mode


async def test_a_missing_token_is_401_with_a_plain_bearer_challenge(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    response = await client.post(REGISTER, json=NATIVE)
    description = await assert_invalid_token(response, adapter, challenge_error=False)
    assert "requires an initial access token" in description


async def test_the_token_is_checked_before_the_body_is_read(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    response = await client.post(REGISTER, data=b"{not json", headers={"Content-Type": "application/json"})
    await assert_invalid_token(response, adapter, challenge_error=False)


async def test_a_token_in_the_body_or_the_query_is_not_accepted(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    for field in ("access_token", "initial_access_token"):
        response = await client.post(REGISTER, json={**NATIVE, field: STATIC_TOKEN})
        await assert_invalid_token(response, adapter, challenge_error=False)
    response = await client.post(f"{REGISTER}?access_token={STATIC_TOKEN}", json=NATIVE)
    description = await assert_invalid_token(response, adapter)
    assert "Authorization header" in description
    # ... even together with a valid header: a token in a URL ends up in logs; refuse it loudly
    response = await client.post(f"{REGISTER}?access_token={STATIC_TOKEN}", json=NATIVE, headers=bearer(STATIC_TOKEN))
    await assert_invalid_token(response, adapter)


async def test_static_and_signed_tokens_register(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    for token in (STATIC_TOKEN, signed_token(), signed_token(max_uses=5)):
        response = await client.post(REGISTER, json=NATIVE, headers=bearer(token))
        assert response.status == 201, await response.text()
    assert len(adapter.clients["default"]) == 3


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (signed_token(expires_in=-120), "expired"),
        (signed_token(audience="http://gateway.test/realms/other"), "not valid for this issuer"),
        (signed_token()[:-4] + "AAAA", "bad signature"),
        ("x" * 64, "not valid"),
    ],
    ids=["expired", "other-issuer", "bad-signature", "unknown"],
)
async def test_bad_tokens_are_401_and_never_echoed(make_gateway: Factory, token: str, message: str) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    response = await client.post(REGISTER, json=NATIVE, headers=bearer(token))
    description = await assert_invalid_token(response, adapter)
    assert message in description
    assert token not in await response.text()


async def test_max_uses_is_enforced_and_counts_only_registrations_that_passed(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    token = signed_token(max_uses=2)
    bad = {"redirect_uris": ["javascript:alert(1)"], "token_endpoint_auth_method": "none"}
    assert (await client.post(REGISTER, json=bad, headers=bearer(token))).status == 400  # not counted
    assert (await client.post(REGISTER, json=NATIVE, headers=bearer(token))).status == 201
    assert (await client.post(REGISTER, json=NATIVE, headers=bearer(token))).status == 201
    response = await client.post(REGISTER, json=NATIVE, headers=bearer(token))
    assert response.status == 401
    assert (await response.json())["error_description"] == "the initial access token has been used up"
    assert len(adapter.clients["default"]) == 2
    # another token's count is its own
    assert (await client.post(REGISTER, json=NATIVE, headers=bearer(signed_token(max_uses=1)))).status == 201


async def test_concurrent_registrations_cannot_share_the_last_use(make_gateway: Factory) -> None:
    import asyncio

    client, adapter = await make_gateway(access=access_config("initial_access_token"))
    token = signed_token(max_uses=3)
    responses = await asyncio.gather(*(client.post(REGISTER, json=NATIVE, headers=bearer(token)) for _ in range(8)))
    assert sorted(r.status for r in responses) == [201] * 3 + [401] * 5
    assert len(adapter.clients["default"]) == 3


async def test_a_counter_store_failure_refuses_a_counted_token_with_503() -> None:
    class DownStore:
        async def incr(self, key: str, *, window_seconds: float, amount: int = 1) -> tuple[int, float]:
            raise ConnectionError("redis down")

    access = IssuerAccessSettings.model_validate({"initial_access_tokens": tokens_config()}).compiled
    control = RegistrationAccess(access, issuer=ISSUER, issuer_key="default", store=DownStore())
    await control.redeem(InitialAccessToken(kind="static"))  # nothing to count: no store call
    with pytest.raises(TemporarilyUnavailable) as raised:
        await control.redeem(InitialAccessToken(kind="signed", jti="j", expires_at=2e9, max_uses=1))
    assert raised.value.status == 503
    assert raised.value.headers["Retry-After"] == "5"
    without_store = RegistrationAccess(access, issuer=ISSUER, issuer_key="default", store=None)
    with pytest.raises(TemporarilyUnavailable):
        await without_store.redeem(InitialAccessToken(kind="signed", jti="j", expires_at=2e9, max_uses=1))


async def test_use_counts_live_as_long_as_the_token() -> None:
    seen: list[tuple[str, float]] = []

    class RecordingStore:
        async def incr(self, key: str, *, window_seconds: float, amount: int = 1) -> tuple[int, float]:
            seen.append((key, window_seconds))
            return 1, window_seconds

    access = IssuerAccessSettings.model_validate({"initial_access_tokens": tokens_config()}).compiled
    control = RegistrationAccess(
        access, issuer=ISSUER, issuer_key="mcp", store=RecordingStore(), clock=lambda: 1_000_000.0
    )
    await control.redeem(InitialAccessToken(kind="signed", jti="abc", expires_at=1_000_600.0, max_uses=2))
    assert seen == [("initial-access-token:mcp:abc", 600 + 30 + 1)]


# ------------------------------------------------------------------------------ software statements


async def test_statement_claims_take_precedence_and_the_statement_is_not_stored(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("software_statement"))
    value = software_statement(client_name="Attested App", software_version="2.0")
    request = {**NATIVE, "client_name": "Self-chosen", "software_id": "self-chosen", "software_statement": value}
    response = await client.post(REGISTER, json=request)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["client_name"] == "Attested App"
    assert body["software_id"] == "sw-attested"
    assert body["software_version"] == "2.0"
    assert "software_statement" not in body
    (stored,) = adapter.clients["default"].values()
    assert stored.metadata.client_name == "Attested App"
    assert stored.metadata.software_id == "sw-attested"
    assert value not in json.dumps(stored.gateway_data)
    assert value.split(".")[2] not in repr(stored)


async def test_statement_claims_are_validated_like_the_request(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("software_statement"))
    value = software_statement(redirect_uris=["javascript:alert(1)"])
    response = await client.post(REGISTER, json={**NATIVE, "software_statement": value})
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_redirect_uri"
    assert adapter.clients["default"] == {}


@pytest.mark.parametrize(
    ("statement", "error"),
    [
        (None, "invalid_software_statement"),
        ("not-a-jwt", "invalid_software_statement"),
        (software_statement(exp=1_000_000_000), "invalid_software_statement"),
        (sign({"iss": STATEMENT_ISSUER}, ec_key("statements-1"), "ES256"), "invalid_software_statement"),
        (sign({"iss": "https://untrusted.example"}, STATEMENT_KEY, "ES256"), "unapproved_software_statement"),
        (sign({"iss": STATEMENT_ISSUER}, ec_key("other"), "ES256"), "unapproved_software_statement"),
    ],
    ids=["missing", "malformed", "expired", "bad-signature", "untrusted-issuer", "unknown-key"],
)
async def test_statement_errors(make_gateway: Factory, statement: str | None, error: str) -> None:
    client, adapter = await make_gateway(access=access_config("software_statement"))
    request = {**NATIVE} if statement is None else {**NATIVE, "software_statement": statement}
    response = await client.post(REGISTER, json=request)
    assert response.status == 400
    body = await response.json()
    assert body["error"] == error
    assert body["error_description"].startswith("software_statement:")
    assert adapter.clients["default"] == {}


async def test_open_mode_verifies_a_statement_when_issuers_are_trusted(make_gateway: Factory) -> None:
    client, _ = await make_gateway(access=access_config("open"))
    untrusted = sign({"iss": "https://untrusted.example"}, STATEMENT_KEY, "ES256")
    response = await client.post(REGISTER, json={**NATIVE, "software_statement": untrusted})
    assert (await response.json())["error"] == "unapproved_software_statement"
    response = await client.post(REGISTER, json={**NATIVE, "software_statement": software_statement()})
    assert (await response.json())["software_id"] == "sw-attested"


async def test_open_mode_without_trusted_issuers_ignores_a_statement(make_gateway: Factory) -> None:
    """RFC 7591 section 2.3: the server "MAY ignore the software statement if it does not support this
    feature": nothing of it is merged, and the caller stays anonymous."""
    client, _ = await make_gateway(policy={"client_credentials": "authenticated"})
    value = software_statement(client_name="Attested")
    response = await client.post(REGISTER, json={**NATIVE, "client_name": "Plain", "software_statement": value})
    assert (await response.json())["client_name"] == "Plain"
    response = await client.post(REGISTER, json={**SERVICE, "software_statement": value})
    assert response.status == 400


# ---------------------------------------------------------------------------------- combined modes


async def test_both_mode_needs_a_token_and_a_statement(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token_and_software_statement"))
    with_statement = {**NATIVE, "software_statement": software_statement()}
    await assert_invalid_token(await client.post(REGISTER, json=with_statement), adapter, challenge_error=False)
    response = await client.post(REGISTER, json=NATIVE, headers=bearer(STATIC_TOKEN))
    assert (await response.json())["error"] == "invalid_software_statement"
    response = await client.post(REGISTER, json=with_statement, headers=bearer(STATIC_TOKEN))
    assert response.status == 201


async def test_either_mode_needs_one_of_them(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(access=access_config("initial_access_token_or_software_statement"))
    response = await client.post(REGISTER, json=NATIVE)
    description = await assert_invalid_token(response, adapter, challenge_error=False)
    assert "or a software_statement" in description
    assert (await client.post(REGISTER, json=NATIVE, headers=bearer(STATIC_TOKEN))).status == 201
    with_statement = {**NATIVE, "software_statement": software_statement()}
    assert (await client.post(REGISTER, json=with_statement)).status == 201
    # a bad credential is refused even though the other one would do
    response = await client.post(REGISTER, json=with_statement, headers=bearer("wrong"))
    assert response.status == 401


async def test_per_issuer_override_by_path_and_by_key(make_gateway: Factory) -> None:
    for name in (ISSUER_PATH, "default"):
        access = {**access_config("open"), "issuers": {name: {"mode": "initial_access_token"}}}
        client, adapter = await make_gateway(access=access)
        await assert_invalid_token(await client.post(REGISTER, json=NATIVE), adapter, challenge_error=False)
        assert (await client.post(REGISTER, json=NATIVE, headers=bearer(STATIC_TOKEN))).status == 201


# ----------------------------------------------------------------------------- privileged metadata


@pytest.mark.parametrize(
    "credential",
    [
        {"headers": bearer(STATIC_TOKEN)},
        {"headers": bearer(signed_token())},
        {"statement": True},
    ],
    ids=["static-token", "signed-token", "software-statement"],
)
async def test_client_credentials_only_for_authenticated_registrations(
    make_gateway: Factory, credential: dict[str, Any]
) -> None:
    client, _ = await make_gateway(access=access_config("open"), policy={"client_credentials": "authenticated"})
    anonymous = await client.post(REGISTER, json=SERVICE)
    assert anonymous.status == 400
    assert "client_credentials" in (await anonymous.json())["error_description"]
    request = {**SERVICE, "software_statement": software_statement()} if credential.get("statement") else SERVICE
    response = await client.post(REGISTER, json=request, headers=credential.get("headers", {}))
    assert response.status == 201, await response.text()
    assert (await response.json())["grant_types"] == ["client_credentials"]


# ------------------------------------------------------------------------------------------- logging


async def test_no_token_or_statement_in_the_logs(make_gateway: Factory, json_logs: io.StringIO) -> None:
    client, _ = await make_gateway(access=access_config("open"), log_level="DEBUG")
    signed = signed_token(max_uses=1)
    statement = software_statement()
    await client.post(REGISTER, json=NATIVE, headers=bearer(STATIC_TOKEN))
    await client.post(REGISTER, json=NATIVE, headers=bearer(signed))
    await client.post(REGISTER, json=NATIVE, headers=bearer(signed))  # used up
    await client.post(REGISTER, json=NATIVE, headers=bearer("wrong-" + STATIC_TOKEN))
    await client.post(REGISTER, json={**NATIVE, "software_statement": statement})
    await client.post(REGISTER, json={**NATIVE, "software_statement": statement[:-8] + "AAAAAAAA"})
    logs = json_logs.getvalue()
    assert "access.denied" in logs
    assert "access.initial_access_token" in logs
    assert "access.software_statement" in logs
    for secret in (STATIC_TOKEN, signed, signed.split(".")[2], statement, statement.split(".")[2], HS256_SECRET):
        assert secret not in logs


async def test_either_mode_with_one_kind_configured_asks_for_that_kind(make_gateway: Factory) -> None:
    only_statements = {"mode": "initial_access_token_or_software_statement", "software_statements": statements_config()}
    client, adapter = await make_gateway(access=only_statements)
    response = await client.post(REGISTER, json=NATIVE, headers=bearer(STATIC_TOKEN))  # tokens: not configured
    assert (await response.json())["error"] == "invalid_software_statement"
    only_tokens = {"mode": "initial_access_token_or_software_statement", "initial_access_tokens": tokens_config()}
    client, adapter = await make_gateway(access=only_tokens)
    description = await assert_invalid_token(await client.post(REGISTER, json=NATIVE), adapter, challenge_error=False)
    assert "requires an initial access token" in description


def test_an_access_override_naming_no_served_issuer_stops_the_start() -> None:
    """A typo in ``[access.issuers."..."]`` would leave the intended issuer open: the app refuses to build."""
    settings = Settings(
        public_url=PUBLIC,
        provider="memory",
        access={
            "issuers": {"/realms/typo": {"mode": "initial_access_token"}},
            "initial_access_tokens": {"static_token_hashes": [hash_initial_access_token("t" * 40)]},
        },
    )
    with pytest.raises(ValueError, match=r"access\.issuers names no served issuer: /realms/typo"):
        create_app(settings, adapter=MemoryAdapter(public_url="http://127.0.0.1:1", issuer_path=ISSUER_PATH))
