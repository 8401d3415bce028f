"""One RFC 6750 Bearer parser for both tokens the gateway accepts: the initial access token at the registration
endpoint (RFC 7591 section 3) and the registration access token at the client configuration endpoint (RFC 7592
section 2). A request that carries its token ambiguously (several ``Authorization`` headers) is refused the same
way at both: RFC 6750 section 3.1 ``invalid_request``, HTTP 400, never one of the headers picked silently."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request
from gateway_factory import ISSUER, PUBLIC, REGISTER, Gateways
from multidict import CIMultiDict

from adapters.memory.adapter import MemoryAdapter
from gateway.access.tokens import hash_initial_access_token
from gateway.oauth.bearer import bearer_token
from gateway.oauth.errors import InvalidBearerRequest, InvalidToken

NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}
STATIC_TOKEN = "static-initial-access-token-0123456789"


def provider_document() -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "code_challenge_methods_supported": ["S256"],
    }


async def start(gateways: Gateways) -> tuple[TestClient[Any, Any], MemoryAdapter]:
    access = {
        "mode": "initial_access_token",
        "initial_access_tokens": {"static_token_hashes": [hash_initial_access_token(STATIC_TOKEN)]},
    }
    return await gateways.start(provider_document(), access=access, limits={"enabled": False})


async def assert_ambiguous(response: Any) -> None:
    assert response.status == 400, await response.text()
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_request"'
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["error"] == "invalid_request"
    assert "single Authorization header" in body["error_description"]
    assert STATIC_TOKEN not in body["error_description"]


async def test_several_authorization_headers_are_invalid_request_at_both_endpoints(gateways: Gateways) -> None:
    client, adapter = await start(gateways)
    good = ("Authorization", f"Bearer {STATIC_TOKEN}")
    response = await client.post(REGISTER, json=NATIVE, headers=[good, ("Authorization", "Bearer other")])
    await assert_ambiguous(response)
    assert adapter.clients["default"] == {}

    registered = await (await client.post(REGISTER, json=NATIVE, headers=[good])).json()
    path = registered["registration_client_uri"][len(PUBLIC) :]
    valid = ("Authorization", f"Bearer {registered['registration_access_token']}")
    for headers in ([valid, ("Authorization", "Bearer other")], [("Authorization", "Bearer other"), valid]):
        await assert_ambiguous(await client.get(path, headers=headers))
        await assert_ambiguous(await client.delete(path, headers=headers))
    assert registered["client_id"] in adapter.clients["default"]  # nothing was deleted


# ------------------------------------------------------------------------------------- the parser alone


def parse(values: list[str], query: str = "") -> str | None:
    headers = CIMultiDict(("Authorization", value) for value in values)
    return bearer_token(make_mocked_request("GET", f"/x{query}", headers=headers), credential="test token")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], None),
        ([""], None),
        (["   "], None),
        (["Bearer abc.DEF-ghi_~+/"], "abc.DEF-ghi_~+/"),
        (["Bearer abc-DEF_123.~+/=="], "abc-DEF_123.~+/=="),
        (["bearer abc=="], "abc=="),
        (["BEARER   abc  "], "abc"),
        (["Bearer " + "a" * 43], "a" * 43),
    ],
)
def test_bearer_credentials_are_read_from_the_authorization_header(values: list[str], expected: str | None) -> None:
    assert parse(values) == expected


@pytest.mark.parametrize(
    "values",
    [
        ["Basic dXNlcjpwYXNz"],
        ["Bearer"],
        ["Bearer "],
        ["Bearer a b"],
        ["Bearer a,b"],
        ["Bearer a=b"],
        ["Bearer tok\u00e9n"],
        ["Bearer =abc"],
        ["Token abc"],
        ["Bearerabc"],
        ["abc"],
        ["Bearer " + "a" * 5000],
    ],
    ids=lambda v: repr(v)[:40],
)
def test_a_malformed_authorization_header_is_invalid_token_401(values: list[str]) -> None:
    with pytest.raises(InvalidToken) as raised:
        parse(values)
    assert raised.value.status == 401
    assert raised.value.error == "invalid_token"
    assert raised.value.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert "dXNlcjpwYXNz" not in raised.value.description


def test_several_authorization_headers_are_invalid_request_400() -> None:
    with pytest.raises(InvalidBearerRequest) as raised:
        parse(["Bearer abc", "Bearer abc"])
    assert raised.value.status == 400
    assert raised.value.error == "invalid_request"
    assert raised.value.headers["WWW-Authenticate"] == 'Bearer error="invalid_request"'


def test_a_token_in_the_url_is_refused_even_with_a_header() -> None:
    with pytest.raises(InvalidToken) as raised:
        parse(["Bearer abc"], query="?access_token=abc")
    assert "never in the URL" in raised.value.description
