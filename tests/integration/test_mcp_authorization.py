"""MCP 2026-07-28 on the authorization path, against the real Hydra and Keycloak (issue 10).

An in-process gateway per provider, configured as an operator would: Client ID Metadata Documents accepted from
one development origin (an https server this module runs on 127.0.0.1 with its own CA, which the gateway trusts)
and one protected resource. A client plays the MCP client by hand (the SDK end-to-end tests do it with the SDKs):

- a document client (``client_id`` = its URL) authorizes with PKCE and ``resource`` from a port its document
  does not name (``http://localhost/callback``, RFC 8252 section 7.3), gets a code with RFC 9207 ``iss``, redeems
  it and refreshes: both tokens are bound to the resource (``aud``), and the provider holds a managed client
  marked as coming from the document with the host in its name;
- an unknown resource: ``invalid_target`` redirected (with ``state`` and ``iss``) and at the token endpoint 400;
- every negative document case is refused before the provider, which holds no new client;
- a document that changes updates the provider client; one that disappears stops new authorizations;
- a DCR client registered with ``http://localhost/callback`` authorizes from any port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.bindings import derived_document_id
from devstack.process import LOOPBACK, free_port
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.app import create_app
from gateway.conformance.cimd_host import tls_context
from gateway.conformance.headless import hydra_accept_login_and_consent, keycloak_form_login
from gateway.conformance.oauth import pkce_pair
from gateway.conformance.tls import development_ca, server_certificate
from gateway.settings import Settings
from tests.integration.conftest import client_count, client_record, hydra_options, keycloak_options

RESOURCE = "http://127.0.0.1:8000/mcp"


# ----------------------------------------------------------------------------------- the document host


@dataclass
class DocumentHost:
    """An https server on 127.0.0.1 serving client metadata documents the test sets (``localhost`` certificate)."""

    origin: str
    ca_file: Path
    documents: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"{self.origin}/{name}"

    def put(self, name: str, document: dict[str, Any], *, max_age: int | None = None) -> str:
        headers = {"Content-Type": "application/json"}
        if max_age is not None:
            headers["Cache-Control"] = f"max-age={max_age}"
        self.documents[name] = (200, headers, json.dumps(document).encode())
        return self.url(name)

    def put_raw(self, name: str, status: int, headers: dict[str, str], body: bytes) -> str:
        self.documents[name] = (status, headers, body)
        return self.url(name)


@pytest.fixture(scope="module")
async def document_host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DocumentHost]:
    directory = tmp_path_factory.mktemp("cimd-tls")
    ca_file, _ = development_ca(directory)
    cert, key = server_certificate(directory, ["localhost", "127.0.0.1"])
    context = tls_context(cert, key)  # the conformance suite's document host's own TLS setup
    port = free_port()
    host = DocumentHost(origin=f"https://localhost:{port}", ca_file=ca_file)

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        host.hits[name] = host.hits.get(name, 0) + 1
        if name not in host.documents:
            return web.Response(status=404)
        status, headers, body = host.documents[name]
        return web.Response(status=status, headers=headers, body=body)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, LOOPBACK, port, ssl_context=context)
    await site.start()
    yield host
    await runner.cleanup()


def document(url: str, *, redirect_uris: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A public MCP client's document, Claude Code's shape (portless loopback redirects)."""
    return {
        "client_id": url,
        "client_name": "Test MCP client",
        "redirect_uris": redirect_uris or ["http://localhost/callback", "http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        **extra,
    }


# ----------------------------------------------------------------------------------- the gateways


@dataclass
class Gateway:
    provider: str
    url: str
    issuer: str
    login: Callable[[aiohttp.ClientSession, str], Awaitable[str]]
    count: Callable[[aiohttp.ClientSession], Awaitable[int]]
    record: Callable[[aiohttp.ClientSession, str], Awaitable[dict[str, Any] | None]]
    audience: Callable[[aiohttp.ClientSession, str], Awaitable[list[str]]]
    authorization_endpoint: str
    token_endpoint: str
    hydra: HydraProvider | None = None
    keycloak: KeycloakProvider | None = None


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


@pytest.fixture(scope="module", params=["hydra", "keycloak"])
async def gateway(request: pytest.FixtureRequest, document_host: DocumentHost) -> AsyncIterator[Gateway]:
    common = {
        "cimd": {
            "development_origins": [document_host.origin],
            "ca_file": str(document_host.ca_file),
            "min_cache_seconds": 0,
            "max_cache_seconds": 1,
        },
        "resources": {"protected": [RESOURCE]},
        "limits": {"enabled": False},
        "log_format": "console",
    }
    if request.param == "hydra":
        hydra: HydraProvider = request.getfixturevalue("hydra_provider")
        server = TestServer(create_app(Settings.model_validate({**hydra_options(hydra), **common})), host=LOOPBACK)
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")

        async def hydra_login(session: aiohttp.ClientSession, authorization_url: str) -> str:
            # Hydra sends the browser to its issuer (the session gateway's origin): fetch those here instead
            return await hydra_accept_login_and_consent(
                session, authorization_url, admin_url=hydra.admin_url, url_map={hydra.issuer: url}
            )

        async def hydra_audience(session: aiohttp.ClientSession, token: str) -> list[str]:
            async with session.post(f"{hydra.admin_url}/admin/oauth2/introspect", data={"token": token}) as response:
                assert response.status == 200
                answer = await response.json()
            assert answer["active"] is True, answer
            return _as_list(answer.get("aud"))

        async def hydra_record(session: aiohttp.ClientSession, client_id: str) -> dict[str, Any] | None:
            return await client_record(hydra, session, client_id)

        yield Gateway(
            provider="hydra",
            url=url,
            issuer=hydra.issuer,
            login=hydra_login,
            count=lambda session: client_count(hydra, session),
            record=hydra_record,
            audience=hydra_audience,
            authorization_endpoint=f"{url}/oauth2/auth",
            token_endpoint=f"{url}/oauth2/token",
            hydra=hydra,
        )
        await server.close()
        return
    keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
    port = free_port()
    url = f"http://{LOOPBACK}:{port}"
    server = TestServer(
        create_app(Settings.model_validate({**keycloak_options(keycloak, url), **common})), host=LOOPBACK, port=port
    )
    await server.start_server()
    issuer = f"{url}/realms/{keycloak.realm}"

    async def keycloak_login(session: aiohttp.ClientSession, authorization_url: str) -> str:
        return await keycloak_form_login(
            session, authorization_url, username=keycloak.username, password=keycloak.password
        )

    async def keycloak_audience(session: aiohttp.ClientSession, token: str) -> list[str]:
        return _as_list(_jwt_claims(token).get("aud"))

    async def keycloak_record(session: aiohttp.ClientSession, client_id: str) -> dict[str, Any] | None:
        return await client_record(keycloak, session, client_id)

    yield Gateway(
        provider="keycloak",
        url=url,
        issuer=issuer,
        login=keycloak_login,
        count=lambda session: client_count(keycloak, session),
        record=keycloak_record,
        audience=keycloak_audience,
        authorization_endpoint=f"{issuer}/protocol/openid-connect/auth",
        token_endpoint=f"{issuer}/protocol/openid-connect/token",
        keycloak=keycloak,
    )
    await server.close()


def _stored_id(gateway: Gateway, url: str) -> str:
    """The provider's id of a document client (the URL on Keycloak, a derived id on Hydra)."""
    return derived_document_id(url) if gateway.hydra is not None else url


@dataclass
class Authorization:
    redirect_uri: str
    state: str
    verifier: str
    location: str

    @property
    def params(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.location).query)


async def authorize(
    http: aiohttp.ClientSession,
    gateway: Gateway,
    client_id: str,
    redirect_uri: str,
    *,
    resource: str | None = RESOURCE,
    scope: str = "offline_access",
) -> Authorization:
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if resource is not None:
        query["resource"] = resource
    location = await gateway.login(http, f"{gateway.authorization_endpoint}?{urlencode(query)}")
    return Authorization(redirect_uri=redirect_uri, state=state, verifier=verifier, location=location)


async def token(http: aiohttp.ClientSession, gateway: Gateway, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with http.post(gateway.token_endpoint, data=form) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        return response.status, body


# ----------------------------------------------------------------------------------------- tests


async def test_discovery_advertises_cimd_public_clients_and_iss(gateway: Gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.url}{urlsplit(gateway.issuer).path}/.well-known/openid-configuration") as response:
        assert response.status == 200
        metadata = await response.json()
    assert metadata["client_id_metadata_document_supported"] is True
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert "S256" in metadata["code_challenge_methods_supported"]


async def test_a_document_client_authorizes_from_any_loopback_port_with_a_bound_token(
    gateway: Gateway, document_host: DocumentHost, http: aiohttp.ClientSession
) -> None:
    name = f"client-{secrets.token_hex(4)}.json"
    url = document_host.put(name, document(document_host.url(name)))
    redirect_uri = f"http://localhost:{free_port()}/callback"
    before = await gateway.count(http)

    # the document names no scope (Claude's does not): the scope the client asks for is registered for it
    granted = await authorize(http, gateway, url, redirect_uri, scope="mcp offline_access")

    assert granted.location.startswith(redirect_uri + "?"), granted.location
    params = granted.params
    assert "error" not in params, params
    assert params["state"] == [granted.state]
    assert params["iss"] == [gateway.issuer]  # RFC 9207, on both providers
    status, tokens = await token(
        http,
        gateway,
        {
            "grant_type": "authorization_code",
            "client_id": url,
            "code": params["code"][0],
            "redirect_uri": redirect_uri,
            "code_verifier": granted.verifier,
            "resource": RESOURCE,
        },
    )
    assert status == 200, tokens
    assert "mcp" in tokens["scope"].split()
    assert RESOURCE in await gateway.audience(http, tokens["access_token"])
    status, refreshed = await token(
        http,
        gateway,
        {
            "grant_type": "refresh_token",
            "client_id": url,
            "refresh_token": tokens["refresh_token"],
            "resource": RESOURCE,
        },
    )
    assert status == 200, refreshed
    assert RESOURCE in await gateway.audience(http, refreshed["access_token"])
    # OAuth 2.1 section 4.3.1 (MCP: the AS MUST rotate a public client's refresh tokens): the used one is spent
    status, reused = await token(
        http, gateway, {"grant_type": "refresh_token", "client_id": url, "refresh_token": tokens["refresh_token"]}
    )
    assert status in (400, 401), reused
    assert reused["error"] == "invalid_grant"

    assert await gateway.count(http) == before + 1
    record = await gateway.record(http, _stored_id(gateway, url))
    assert record is not None
    shown = record.get("client_name") if gateway.hydra else record.get("name")
    # the consent page names the document's host and where the browser is sent back
    assert shown == "Test MCP client (localhost, redirects to 127.0.0.1)"


async def test_an_unknown_resource_is_invalid_target_at_both_endpoints(
    gateway: Gateway, document_host: DocumentHost, http: aiohttp.ClientSession
) -> None:
    name = f"target-{secrets.token_hex(4)}.json"
    url = document_host.put(name, document(document_host.url(name)))
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": url,
        "redirect_uri": redirect_uri,
        "state": "s-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": "https://elsewhere.example/mcp",
    }
    async with http.get(f"{gateway.authorization_endpoint}?{urlencode(query)}", allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert location.startswith(redirect_uri + "?")
    params = parse_qs(urlsplit(location).query)
    assert params["error"] == ["invalid_target"]
    assert params["state"] == ["s-1"]
    assert params["iss"] == [gateway.issuer]

    status, body = await token(
        http,
        gateway,
        {
            "grant_type": "authorization_code",
            "client_id": url,
            "code": "x",
            "code_verifier": verifier,
            "redirect_uri": redirect_uri,
            "resource": "https://elsewhere.example/mcp",
        },
    )
    assert status == 400
    assert body["error"] == "invalid_target"


def _negative_documents(host: DocumentHost) -> dict[str, tuple[str, str]]:
    """name -> (client_id URL to authorize with, the error expected)."""
    cases: dict[str, tuple[str, str]] = {}
    tag = secrets.token_hex(3)
    url = host.url(f"mismatch-{tag}.json")
    host.put(f"mismatch-{tag}.json", document(host.url("someone-else.json")))
    cases["client_id mismatch"] = (url, "invalid_client")
    url = host.url(f"secret-{tag}.json")
    host.put(f"secret-{tag}.json", document(url, token_endpoint_auth_method="client_secret_basic"))
    cases["shared-secret method"] = (url, "invalid_client")
    url = host.put_raw(f"redirect-{tag}.json", 302, {"Location": host.url(f"secret-{tag}.json")}, b"")
    cases["redirect on fetch"] = (url, "invalid_client")
    url = host.put_raw(f"html-{tag}.json", 200, {"Content-Type": "text/html"}, b"<html></html>")
    cases["not JSON"] = (url, "invalid_client")
    big = document(host.url(f"big-{tag}.json"), client_name="x" * 6000)
    url = host.put(f"big-{tag}.json", big)
    cases["oversized"] = (url, "invalid_client")
    url = host.url(f"gone-{tag}.json")
    cases["not found"] = (url, "invalid_client")
    cases["http URL"] = (f"http://localhost:{urlsplit(host.origin).port}/x.json", "invalid_client")
    cases["private address"] = ("https://10.1.2.3/client.json", "invalid_client")
    cases["loopback, not the development origin"] = ("https://127.0.0.2:8443/client.json", "invalid_client")
    url = host.url(f"redirect-mismatch-{tag}.json")
    host.put(f"redirect-mismatch-{tag}.json", document(url, redirect_uris=["https://app.example/cb"]))
    cases["redirect_uri not in the document"] = (url, "invalid_request")
    return cases


async def test_refused_documents_are_answered_to_the_user_agent_and_create_nothing(
    gateway: Gateway, document_host: DocumentHost, http: aiohttp.ClientSession
) -> None:
    before = await gateway.count(http)
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    seen: dict[str, tuple[int, str]] = {}
    for case, (client_id, _) in _negative_documents(document_host).items():
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": "s",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
            "resource": RESOURCE,
        }
        async with http.get(f"{gateway.authorization_endpoint}?{urlencode(query)}", allow_redirects=False) as response:
            body = await response.json(content_type=None)
            seen[case] = (response.status, body.get("error", ""))
            assert "Location" not in response.headers, case  # never redirected (RFC 6749 4.1.2.1)
            assert body.get("error_description"), case
    expected = {case: (400, error) for case, (_, error) in _negative_documents(document_host).items()}
    assert seen == expected
    assert await gateway.count(http) == before


async def test_a_changed_document_updates_the_client_and_a_gone_one_stops_authorizations(
    gateway: Gateway, document_host: DocumentHost, http: aiohttp.ClientSession
) -> None:
    name = f"changing-{secrets.token_hex(4)}.json"
    url = document_host.url(name)
    document_host.put(name, document(url, redirect_uris=["https://one.example/cb"]), max_age=0)
    query = {
        "response_type": "code",
        "client_id": url,
        "state": "s",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    async with http.get(
        f"{gateway.authorization_endpoint}?{urlencode({**query, 'redirect_uri': 'https://one.example/cb'})}",
        allow_redirects=False,
    ) as response:
        assert response.status in (200, 302, 303), await response.text()
    record = await gateway.record(http, _stored_id(gateway, url))
    assert record is not None
    assert _redirects(record) == ["https://one.example/cb"]

    document_host.put(name, document(url, redirect_uris=["https://two.example/cb"]), max_age=0)
    await asyncio.sleep(1.1)  # past the test gateway's cache ceiling
    async with http.get(
        f"{gateway.authorization_endpoint}?{urlencode({**query, 'redirect_uri': 'https://two.example/cb'})}",
        allow_redirects=False,
    ) as response:
        assert response.status in (200, 302, 303), await response.text()
    record = await gateway.record(http, _stored_id(gateway, url))
    assert record is not None and _redirects(record) == ["https://two.example/cb"]

    del document_host.documents[name]
    await asyncio.sleep(1.1)
    async with http.get(
        f"{gateway.authorization_endpoint}?{urlencode({**query, 'redirect_uri': 'https://two.example/cb'})}",
        allow_redirects=False,
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_client"


def _redirects(record: dict[str, Any]) -> list[str]:
    return list(record.get("redirect_uris") or record.get("redirectUris") or [])


async def test_a_registered_localhost_redirect_works_from_any_port(
    gateway: Gateway, http: aiohttp.ClientSession
) -> None:
    registration = {
        "client_name": "localhost app",
        "redirect_uris": ["http://localhost/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "application_type": "native",
    }
    async with http.post(f"{gateway.url}{urlsplit(gateway.issuer).path}/register", json=registration) as response:
        assert response.status == 201, await response.text()
        client = await response.json()
    for _ in range(2):  # two different ports, one after the other
        redirect_uri = f"http://localhost:{free_port()}/callback"
        granted = await authorize(http, gateway, client["client_id"], redirect_uri)
        assert granted.location.startswith(redirect_uri + "?"), granted.location
        assert "code" in granted.params, granted.params
        status, tokens = await token(
            http,
            gateway,
            {
                "grant_type": "authorization_code",
                "client_id": client["client_id"],
                "code": granted.params["code"][0],
                "redirect_uri": redirect_uri,
                "code_verifier": granted.verifier,
            },
        )
        assert status == 200, tokens


async def test_document_fetches_are_rate_limited_per_source(
    hydra_provider: HydraProvider, document_host: DocumentHost, http: aiohttp.ClientSession
) -> None:
    """A source cannot make the gateway fetch (and create clients for) documents without bound: new document URLs
    count against the registration rate limit; past it 429 and no fetch."""
    settings = {
        **hydra_options(hydra_provider),
        "cimd": {"development_origins": [document_host.origin], "ca_file": str(document_host.ca_file)},
        "limits": {"per_source_limit": 2, "per_source_window_seconds": 60, "global_limit": 0},
    }
    server = TestServer(create_app(Settings.model_validate(settings)), host=LOOPBACK)
    await server.start_server()
    try:
        names = [f"limited-{secrets.token_hex(4)}.json" for _ in range(3)]
        statuses = []
        for name in names:
            url = document_host.put(name, document(document_host.url(name)))
            query = {
                "response_type": "code",
                "client_id": url,
                "redirect_uri": "http://127.0.0.1:5000/callback",
                "code_challenge": "x" * 43,
                "code_challenge_method": "S256",
            }
            async with http.get(server.make_url("/oauth2/auth").with_query(query), allow_redirects=False) as response:
                statuses.append(response.status)
        assert all(status in (302, 303) for status in statuses[:2]), statuses  # on to Hydra's login
        assert statuses[2] == 429
        assert document_host.hits.get(names[2], 0) == 0  # refused before the fetch
    finally:
        await server.close()
