"""The front door against a hostile client, through the real Keycloak and Hydra gateways (raw sockets).

- slow request bodies cannot starve the proxy: they are read whole, within a deadline, before an upstream
  connection is taken, so 200 clients that never finish their body do not stop another client's login;
- an encoded request body is refused (415), never forwarded altered;
- odd request targets (asterisk-form, absolute-form without a path, CONNECT) get a JSON 4xx that does not repeat
  the request;
- only what OAuth clients and browsers need of the served issuers is proxied (not Keycloak's master realm, its
  account console, or Hydra's health and version endpoints); an operator can widen the allow-list.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import secrets
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urljoin

import aiohttp
import pytest
from yarl import URL

from devstack.process import free_port
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.settings import Settings
from tests.integration.conftest import (
    GatewayProcess,
    InProcessGateways,
    hydra_options,
    keycloak_options,
    keycloak_target,
)
from tests.integration.flows import (
    LOOPBACK_CALLBACK,
    Target,
    authorization_code_flow,
    native_client,
    pkce_pair,
    register,
)

SLOW_CONNECTIONS = 200
BODY_DEADLINE = 10.0
"""The gateway's default ``front_door.body_timeout_seconds``."""


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def read_response(reader: asyncio.StreamReader, *, within: float) -> RawResponse:
    """One HTTP/1.1 response with a ``Content-Length`` (or closed by the server) from ``reader``."""
    async with asyncio.timeout(within):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        else:
            body = await reader.read()
    return RawResponse(status=int(status_line.split()[1]), headers=headers, body=body)


async def exchange(url: str, request: bytes, *, within: float = 15.0) -> RawResponse:
    """Send ``request`` as is to the gateway at ``url`` and read its answer."""
    address = URL(url)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    try:
        writer.write(request)
        await writer.drain()
        return await read_response(reader, within=within)
    finally:
        writer.close()


def host_of(url: str) -> str:
    return URL(url).host_port_subcomponent or ""


def assert_json_error(response: RawResponse, *, echoed: str) -> None:
    """A JSON error body (RFC 6749 section 5.2 shape) that does not repeat ``echoed`` from the request."""
    assert response.headers["content-type"].startswith("application/json"), response
    body = response.json()
    assert isinstance(body.get("error"), str), body
    assert echoed.encode() not in response.body, response.body


# ---------------------------------------------------------------------------------------- 1. slow bodies


async def test_slow_request_bodies_do_not_starve_logins(
    keycloak_gateway: GatewayProcess, keycloak_provider: KeycloakProvider, http: aiohttp.ClientSession
) -> None:
    target = keycloak_target(keycloak_provider, keycloak_gateway.url, keycloak_gateway.log_path)
    gateway = URL(keycloak_gateway.url)
    token_path = f"/realms/{keycloak_provider.realm}/protocol/openid-connect/token"
    slow_request = (
        f"POST {token_path} HTTP/1.1\r\nHost: {host_of(keycloak_gateway.url)}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\ng"
    ).encode()
    status, client = await register(http, target, native_client("front-door slow bodies"))
    assert status == 201, client
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(SLOW_CONNECTIONS):  # one byte of a 100000-byte body, then silence
            reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
            writer.write(slow_request)
            connections.append((reader, writer))
        await asyncio.gather(*(writer.drain() for _, writer in connections))
        await asyncio.sleep(0.5)
        # Meanwhile another client signs in, redeems its code and refreshes its token, all through the front door,
        # before the slow clients' body deadline (before: 504 after 10 s, the upstream pool held by their bodies).
        async with asyncio.timeout(BODY_DEADLINE - 1):
            await authorization_code_flow(http, target, client, redirect_uri=LOOPBACK_CALLBACK)
        assert not any(reader.at_eof() for reader, _ in connections), "the slow clients were still sending"
        # Each slow client is answered 408 once its body deadline passes, and the connection is closed.
        answers = await asyncio.gather(*(read_response(reader, within=BODY_DEADLINE + 10) for reader, _ in connections))
        assert {answer.status for answer in answers} == {408}
        assert answers[0].json()["error"] == "invalid_request"
        assert answers[0].headers.get("connection", "").lower() == "close"
    finally:
        for _, writer in connections:
            writer.close()


async def test_request_body_over_the_limit_is_413_before_the_provider(keycloak_gateway: GatewayProcess) -> None:
    response = await exchange(
        keycloak_gateway.url,
        (
            f"POST /realms/mcp/protocol/openid-connect/token HTTP/1.1\r\nHost: {host_of(keycloak_gateway.url)}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {64 * 1024 * 1024}\r\n\r\ngrant_type=front-door-marker"
        ).encode(),
        within=5,
    )
    assert response.status == 413
    assert_json_error(response, echoed="front-door-marker")


# ------------------------------------------------------------------------------------ 2. encoded bodies


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "x-unknown"])
async def test_encoded_request_bodies_are_refused_not_altered(target: Target, encoding: str) -> None:
    form = urlencode({"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x" * 40})
    body = gzip.compress(form.encode()) if encoding == "gzip" else form.encode()
    token_path = URL(target.issuer).path.rstrip("/") + (
        "/protocol/openid-connect/token" if target.provider == "keycloak" else "/oauth2/token"
    )
    response = await exchange(
        target.url,
        (
            f"POST {token_path} HTTP/1.1\r\nHost: {host_of(target.url)}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Encoding: {encoding}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body,
        within=5,  # before: the provider waited for bytes that never came, 504 after 10 s
    )
    assert response.status == 415
    assert response.headers["accept-encoding"] == "identity"
    assert_json_error(response, echoed="client_secret")


async def test_identity_coded_and_chunked_bodies_reach_the_provider_byte_for_byte(target: Target) -> None:
    form = urlencode({"grant_type": "client_credentials", "client_id": "front-door-nobody", "client_secret": "x"})
    token_path = URL(target.issuer).path.rstrip("/") + (
        "/protocol/openid-connect/token" if target.provider == "keycloak" else "/oauth2/token"
    )
    half = len(form) // 2
    chunked = f"{half:x}\r\n{form[:half]}\r\n{len(form) - half:x}\r\n{form[half:]}\r\n0\r\n\r\n"
    response = await exchange(
        target.url,
        (
            f"POST {token_path} HTTP/1.1\r\nHost: {host_of(target.url)}\r\nConnection: close\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Encoding: identity\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n{chunked}"
        ).encode(),
        within=8,
    )
    # The provider parsed the form: an unknown client, not a malformed request or a timeout.
    assert response.status in (400, 401), response
    assert response.json()["error"] == "invalid_client", response


# ------------------------------------------------------------------------------------- 3. odd targets


@pytest.mark.parametrize(
    ("request_line", "echoed"),
    [
        ("OPTIONS * HTTP/1.1", "*"),
        ("GET http://front-door-marker.example:8081 HTTP/1.1", "front-door-marker"),
        ("GET http://front-door-marker.example HTTP/1.1", "front-door-marker"),
        ("GET ftp://front-door-marker.example/x HTTP/1.1", "front-door-marker"),
        ("CONNECT front-door-marker.example:443 HTTP/1.1", "front-door-marker"),
    ],
    ids=["asterisk", "absolute-no-path-port", "absolute-no-path", "absolute-ftp", "connect"],
)
async def test_odd_request_targets_get_a_json_4xx(target: Target, request_line: str, echoed: str) -> None:
    response = await exchange(target.url, f"{request_line}\r\nHost: {host_of(target.url)}\r\n\r\n".encode(), within=5)
    assert 400 <= response.status < 500, response
    assert_json_error(response, echoed=echoed if echoed != "*" else '"*"')


MARKER = "sEcReT-MaRkEr-7f3a"
"""Stands for a token in a request the parser refuses: it must not come back in the answer."""


@pytest.mark.parametrize(
    "request_bytes",
    [
        f"GET a/{MARKER} HTTP/1.1\r\nHost: x\r\n\r\n",  # origin-form target without a leading slash
        f"GET /x HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {MARKER}\r\n\r\n",  # header without a colon
        f"G{MARKER}\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",  # invalid method
        f"GET / HTTP/1.1\r\nHost: x\r\nX-Long: {MARKER}{'a' * 9000}\r\n\r\n",  # header over the limit
        f"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1{MARKER}\r\n\r\n",  # bad framing
        f"GET /{MARKER} HTTP/9.9\r\nHost: x\r\n\r\n",  # unknown version
    ],
    ids=["relative-target", "header-without-colon", "bad-method", "long-header", "bad-content-length", "version"],
)
async def test_requests_the_parser_refuses_get_json_that_quotes_nothing(target: Target, request_bytes: str) -> None:
    """What aiohttp cannot parse never reaches the app: the ``dcr-gateway serve`` connection handler answers it
    (gateway/server.py) with a JSON 4xx, not aiohttp's plain text that quoted the request line or header."""
    response = await exchange(target.url, request_bytes.encode("latin-1"), within=5)
    assert 400 <= response.status < 500, response
    assert_json_error(response, echoed=MARKER)
    assert response.headers.get("cache-control") == "no-store", response


async def test_registration_bodies_that_never_arrive_hold_no_quota_slot(
    hydra_provider: HydraProvider, start: InProcessGateways
) -> None:
    """A registration whose body never arrives gets 408 after ``body_timeout_seconds`` and, meanwhile, holds no
    quota slot: before, each one counted as a client until its connection closed, so a few idle sockets filled
    the quota and every registration got 403 (found in review after issue 8)."""
    settings = Settings(
        **hydra_options(hydra_provider),
        body_timeout_seconds=2,
        limits={"max_clients_per_issuer": 100_000, "per_source_limit": 0, "global_limit": 0},
    )
    client = await start(settings)
    url = str(client.make_url("/register"))
    stalled = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()
        stalled.append((reader, writer))
    try:
        await asyncio.sleep(0.5)  # the three are inside the handler, reading
        async with client.session.post(url, json=native_client("arrives")) as response:
            assert response.status == 201, await response.text()
        for reader, _ in stalled:
            answer = await read_response(reader, within=5)
            assert answer.status == 408, answer
            assert answer.json()["error"] == "invalid_request"
    finally:
        for _, writer in stalled:
            writer.close()


async def test_transfer_codings_other_than_chunked_get_501(target: Target) -> None:
    """RFC 9112 section 6.1: ``gzip, chunked`` was de-chunked by the parser and forwarded gzip bytes as identity;
    it is refused, on the front door and on registration alike."""
    issuer_path = URL(target.issuer).path.rstrip("/")
    token_path = "/oauth2/token" if target.provider == "hydra" else issuer_path + "/protocol/openid-connect/token"
    for path in (token_path, issuer_path + "/register"):
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {host_of(target.url)}\r\nTransfer-Encoding: gzip, chunked\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ).encode()
        response = await exchange(target.url, request, within=5)
        assert response.status == 501, (path, response)
        assert_json_error(response, echoed="gzip")


async def test_an_unsupported_content_type_is_not_echoed(target: Target, http: aiohttp.ClientSession) -> None:
    marker = "text/eyJhbGciOiJIUzI1NiJ9.leaked"
    async with http.post(target.registration_endpoint, data=b"{}", headers={"Content-Type": marker}) as response:
        assert response.status == 400
        body = await response.text()
    assert "eyJ" not in body and "eyj" not in body, body


# ---------------------------------------------------------------------------------------- 4. allow-list


async def test_keycloak_master_realm_is_not_reachable(
    keycloak_gateway: GatewayProcess, keycloak_provider: KeycloakProvider, http: aiohttp.ClientSession
) -> None:
    username, password = keycloak_provider.bootstrap_admin
    # Online password guessing against the Keycloak administrator: admin-cli's password grant in master.
    async with http.post(
        f"{keycloak_gateway.url}/realms/master/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "admin-cli", "username": username, "password": password},
    ) as response:
        assert response.status == 404, await response.text()
        assert (await response.json())["error"] == "not_found"
    for method, path in [
        ("POST", "/realms/master/clients-registrations/openid-connect"),
        ("GET", "/realms/master/protocol/openid-connect/certs"),
        ("GET", "/realms/master/account"),
        ("GET", "/realms/mcp/account"),
        ("GET", "/realms/mcp"),
        ("GET", "/admin/master/console/"),
        ("GET", "/"),
        ("GET", "/realms/mcp/protocol/openid-connect/../../../master/protocol/openid-connect/certs"),
        ("GET", "/realms/mcp/protocol/openid-connect/%2e%2e/%2e%2e/%2e%2e/master/protocol/openid-connect/certs"),
        ("GET", "/realms/mcp/protocol/openid-connect/..;/..;/..;/master/protocol/openid-connect/certs"),
        (
            "GET",
            "/realms/mcp/protocol/openid-connect/%252e%252e/%252e%252e/%252e%252e/master/protocol/openid-connect/certs",
        ),
    ]:
        async with http.request(method, URL(keycloak_gateway.url + path, encoded=True), json={}) as response:
            assert response.status == 404, (path, response.status)
            assert (await response.json())["error"] == "not_found", path
    async with http.get(f"{keycloak_gateway.url}/realms/mcp/protocol/openid-connect/certs") as response:
        assert response.status == 200
        assert "keys" in await response.json()


class _Resources(HTMLParser):
    """Every ``src``/``href`` of a page, and the ``url(...)`` of inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in {"script", "img"} and attributes.get("src"):
            self.urls.append(str(attributes["src"]))
        if tag == "link" and attributes.get("href"):
            self.urls.append(str(attributes["href"]))


async def test_keycloak_login_page_and_what_it_loads_pass_the_allow_list(
    keycloak_gateway: GatewayProcess, keycloak_provider: KeycloakProvider, http: aiohttp.ClientSession
) -> None:
    target = keycloak_target(keycloak_provider, keycloak_gateway.url, keycloak_gateway.log_path)
    status, client = await register(http, target, native_client("front-door login page"))
    assert status == 201, client
    _, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": LOOPBACK_CALLBACK,
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    page_url = f"{target.issuer}/protocol/openid-connect/auth?{urlencode(query)}"
    async with http.get(page_url) as response:
        assert response.status == 200
        page = await response.text()
    parser = _Resources()
    parser.feed(page)
    loaded = [urljoin(page_url, url) for url in parser.urls if not url.startswith(("data:", "#"))]
    assert loaded, "the login page loads nothing?"
    for url in loaded:
        assert url.startswith(keycloak_gateway.url), url
        async with http.get(url) as response:
            assert response.status == 200, url
            if url.endswith(".css"):  # what the style sheets load in turn
                for ref in re.findall(r"url\(['\"]?([^'\")]+)", await response.text()):
                    if not ref.startswith("data:"):
                        async with http.get(urljoin(url, ref)) as nested:
                            assert nested.status == 200, urljoin(url, ref)


async def test_hydra_serves_only_its_public_oauth_endpoints(
    hydra_gateway: GatewayProcess, hydra_provider: HydraProvider, http: aiohttp.ClientSession
) -> None:
    for path in ("/health/alive", "/health/ready", "/version", "/metrics/prometheus", "/admin/clients", "/"):
        async with http.get(hydra_gateway.url + path) as response:
            assert response.status == 404, (path, response.status)
            assert (await response.json())["error"] == "not_found"
    async with http.get(f"{hydra_gateway.url}/.well-known/jwks.json") as response:
        assert response.status == 200
    async with http.post(f"{hydra_gateway.url}/oauth2/token", data={"grant_type": "client_credentials"}) as response:
        assert response.status in (400, 401)
        assert (await response.json())["error"] in ("invalid_client", "invalid_request")
    async with http.get(f"{hydra_gateway.url}/oauth2/fallbacks/error?error=x") as response:
        assert response.content_type == "text/html"  # Hydra's own error page, not the gateway's 404


async def test_an_operator_can_widen_the_allow_list(
    keycloak_provider: KeycloakProvider, start: InProcessGateways, http: aiohttp.ClientSession
) -> None:
    options = keycloak_options(keycloak_provider, f"http://127.0.0.1:{free_port()}")
    narrow = await start(Settings.model_validate(options))
    wide = await start(
        Settings.model_validate(
            {
                **options,
                "front_door": {
                    "allowed_paths": ["/realms/master/protocol/openid-connect/certs"],
                    "account_pages": True,
                },
            }
        )
    )
    for path in ("/realms/master/protocol/openid-connect/certs", "/realms/mcp/account"):
        async with narrow.get(path, allow_redirects=False) as response:
            assert response.status == 404, path
    async with wide.get("/realms/master/protocol/openid-connect/certs") as response:
        assert response.status == 200
        assert "keys" in await response.json()
    async with wide.get("/realms/master/protocol/openid-connect/token") as response:
        assert response.status == 404  # only the prefix the operator named
    async with wide.get("/realms/mcp/account", allow_redirects=False) as response:
        assert response.status != 404
