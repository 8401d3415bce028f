"""The development-only Hydra login & consent app (``make run``), driven as a browser would: its pages, its
forms, through the gateway in front of the session's real Hydra."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp

from tests.integration.conftest import GatewayProcess
from tests.integration.flows import LOOPBACK_CALLBACK, Target, discover, native_client, pkce_pair, register

_CHALLENGE = re.compile(r'name="(login_challenge|consent_challenge)" value="([^"]+)"')


async def _follow(http: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    """GET ``url`` following redirects until a page or the client's callback; returns (final URL, page)."""
    for _ in range(10):
        if url.split("?", 1)[0] == LOOPBACK_CALLBACK:  # the client's own redirect: a browser stops here
            return url, ""
        async with http.get(url, allow_redirects=False) as response:
            if response.status in (302, 303):
                url = urljoin(url, response.headers["Location"])
                continue
            assert response.status == 200, (url, response.status)
            return url, await response.text()
    raise AssertionError(f"too many redirects from {url}")


async def _submit(http: aiohttp.ClientSession, page_url: str, page: str, action: str) -> str:
    name, challenge = _CHALLENGE.search(page).groups()  # type: ignore[union-attr]
    path = "/login" if name == "login_challenge" else "/consent"
    async with http.post(
        urljoin(page_url, path), data={name: challenge, "action": action}, allow_redirects=False
    ) as response:
        assert response.status == 303
        return urljoin(page_url, response.headers["Location"])


async def _start(http: aiohttp.ClientSession, target: Target) -> tuple[str, str]:
    status, client = await register(http, target, native_client("Dev app check", scope="openid offline_access"))
    assert status == 201
    document = await discover(http, target)
    _, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": LOOPBACK_CALLBACK,
        "scope": "openid offline_access",
        "state": "dev-app-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return await _follow(http, f"{document['authorization_endpoint']}?{urlencode(query)}")


def _target(gateway: GatewayProcess) -> Target:
    async def unused(_: aiohttp.ClientSession, __: str) -> str:
        raise AssertionError("this test drives the pages itself")

    return Target("hydra", gateway.url, gateway.issuer, f"{gateway.url}/register", unused, "openid offline_access")


async def test_sign_in_and_consent_pages_lead_to_a_code(
    hydra_gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    url, page = await _start(http, _target(hydra_gateway))
    assert "DEVELOPMENT ONLY" in page
    assert "Dev app check" in page
    assert "Sign in as alice" in page
    url, page = await _follow(http, await _submit(http, url, page, "accept"))
    assert "Consent" in page
    assert "offline_access" in page
    final, _ = await _follow(http, await _submit(http, url, page, "accept"))
    params = parse_qs(urlsplit(final).query)
    assert params["state"] == ["dev-app-state"]
    assert params["code"][0]


async def test_deny_returns_access_denied_to_the_client(
    hydra_gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    url, page = await _start(http, _target(hydra_gateway))
    final, _ = await _follow(http, await _submit(http, url, page, "deny"))
    assert parse_qs(urlsplit(final).query)["error"] == ["access_denied"]
