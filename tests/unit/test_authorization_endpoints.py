"""The checked authorization, PAR, token and revocation endpoints at the HTTP level (issue 10).

The real app with the in-memory adapter (its endpoints under ``/realms/mcp``: ``/authorize``, ``/token``, ``/par``,
``/revoke``) in front of a fake provider that records what reaches it and answers like one. What the real
providers do with it is proved in tests/integration/test_mcp_authorization.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from gateway_factory import ISSUER, ISSUER_PATH, REGISTER, Gateways
from yarl import URL

from adapters.base import NewClient
from adapters.memory.adapter import MemoryAdapter
from gateway.oauth.metadata import ClientMetadata

Client = TestClient[Any, Any]
RESOURCE = "http://127.0.0.1:8000/mcp"
CALLBACK = "http://127.0.0.1:4000/callback"
DOCUMENT = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/authorize",
    "token_endpoint": f"{ISSUER}/token",
    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    "response_types_supported": ["code"],
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"],
}


@dataclass
class Provider:
    """The fake provider: what reached it, and how its authorization endpoint answers."""

    seen: list[tuple[str, str, bytes]] = field(default_factory=list)
    form_post: bool = False
    slow: bool = False
    big_page: bool = False

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", f"{ISSUER_PATH}/authorize", self.authorize)
        app.router.add_post(f"{ISSUER_PATH}/token", self.echo)
        app.router.add_post(f"{ISSUER_PATH}/par", self.echo)
        app.router.add_post(f"{ISSUER_PATH}/revoke", self.echo)

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.raw_path, body))
        params = parse_qs(request.rel_url.raw_query_string or body.decode())
        state = params.get("state", [""])[0]
        if self.big_page:
            streamed = web.StreamResponse(headers={"Content-Type": "text/html"})
            await streamed.prepare(request)
            for _ in range(5):  # 5 x 64 KiB, no Content-Length: larger than what is rewritten
                await streamed.write(b"<p>" + b"x" * (64 * 1024 - 8) + b"</p>\n")
            await streamed.write_eof()
            return streamed
        if self.form_post:
            page = (
                f'<html><body><form method="post" action="{CALLBACK}">'
                f'<input type="hidden" name="code" value="c1"/><input type="hidden" name="state" value="{state}"/>'
                "</form></body></html>"
            )
            if not self.slow:
                return web.Response(text=page, content_type="text/html")
            streamed = web.StreamResponse(headers={"Content-Type": "text/html"})
            await streamed.prepare(request)
            half = len(page) // 2
            await streamed.write(page[:half].encode())
            await asyncio.sleep(0.2)  # the rest arrives later, in another read
            await streamed.write(page[half:].encode())
            await streamed.write_eof()
            return streamed
        return web.Response(status=302, headers={"Location": f"{CALLBACK}?code=c1&state={quote(state, safe='')}"})

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((request.method, request.raw_path, body))
        return web.json_response({"form": parse_qs(body.decode())})


@pytest.fixture
async def provider_and_gateway(gateways: Gateways) -> tuple[Provider, Client, MemoryAdapter]:
    provider = Provider()
    client, adapter = await gateways.start(
        DOCUMENT,
        upstream_routes=provider.routes,
        adapter_options={"oauth_paths": True, "derived_document_ids": True},
        resources={"protected": [RESOURCE]},
        limits={"enabled": False},
    )
    return provider, client, adapter


async def registered(client: Client, redirect_uris: list[str] | None = None) -> str:
    body = {"redirect_uris": redirect_uris or [CALLBACK], "token_endpoint_auth_method": "none"}
    async with client.post(REGISTER, json=body) as response:
        assert response.status == 201, await response.text()
        client_id: str = (await response.json())["client_id"]
        return client_id


async def test_discovery_advertises_iss_and_cimd_with_none(provider_and_gateway: tuple[Provider, Client, Any]) -> None:
    _, client, _ = provider_and_gateway
    async with client.get(f"{ISSUER_PATH}/.well-known/openid-configuration") as response:
        metadata = await response.json()
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["client_id_metadata_document_supported"] is True
    assert metadata["token_endpoint_auth_methods_supported"] == ["client_secret_basic", "none"]


async def test_an_unchanged_request_reaches_the_provider_byte_for_byte_and_gets_iss(
    provider_and_gateway: tuple[Provider, Client, Any],
) -> None:
    provider, client, _ = provider_and_gateway
    client_id = await registered(client)
    query = (
        f"response_type=code&client_id={client_id}&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcallback&state=a+b%2Bc"
    )
    target = URL(f"{client.make_url('')}".rstrip("/") + f"{ISSUER_PATH}/authorize?{query}", encoded=True)
    async with client.session.get(target, allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert provider.seen[-1][1] == f"{ISSUER_PATH}/authorize?{query}"  # as sent, not re-encoded
    assert parse_qs(urlsplit(location).query) == {"code": ["c1"], "state": ["a b+c"], "iss": [ISSUER]}


async def test_a_form_post_response_gets_a_hidden_iss(provider_and_gateway: tuple[Provider, Client, Any]) -> None:
    provider, client, _ = provider_and_gateway
    provider.form_post = True
    client_id = await registered(client)
    async with client.get(
        f"{ISSUER_PATH}/authorize", params={"client_id": client_id, "response_mode": "form_post", "state": "s"}
    ) as response:
        page = await response.text()
        assert int(response.headers["Content-Length"]) == len(page.encode())
    assert f'name="iss" value="{ISSUER}"' in page


async def test_a_page_that_arrives_in_parts_is_rewritten_whole(
    provider_and_gateway: tuple[Provider, Client, Any],
) -> None:
    provider, client, _ = provider_and_gateway
    provider.form_post = provider.slow = True
    client_id = await registered(client)
    async with client.get(
        f"{ISSUER_PATH}/authorize", params={"client_id": client_id, "response_mode": "form_post", "state": "s"}
    ) as response:
        page = await response.text()
        assert int(response.headers["Content-Length"]) == len(page.encode())
    assert page.endswith("</form></body></html>")  # before: cut at what the first read returned
    assert f'name="iss" value="{ISSUER}"' in page


async def test_a_page_too_large_to_rewrite_passes_through_whole(
    provider_and_gateway: tuple[Provider, Client, Any],
) -> None:
    provider, client, _ = provider_and_gateway
    provider.big_page = True
    async with client.get(f"{ISSUER_PATH}/authorize", params={"client_id": "c"}) as response:
        assert response.status == 200
        page = await response.read()
    assert len(page) == 5 * 64 * 1024


async def test_a_protected_resource_is_bound_the_providers_way(
    provider_and_gateway: tuple[Provider, Client, MemoryAdapter],
) -> None:
    provider, client, adapter = provider_and_gateway
    client_id = await registered(client)
    params = {"client_id": client_id, "redirect_uri": CALLBACK, "resource": "HTTP://127.0.0.1:8000/mcp/"}
    async with client.get(f"{ISSUER_PATH}/authorize", params=params, allow_redirects=False) as response:
        assert response.status == 302
    forwarded = parse_qs(urlsplit(provider.seen[-1][1]).query)
    assert forwarded["resource"] == [RESOURCE]  # the configured form
    assert forwarded["audience"] == [RESOURCE]  # the memory adapter binds like Hydra
    assert adapter.audiences["default"][client_id] == [RESOURCE]


async def test_an_unknown_resource_is_redirected_as_invalid_target_for_a_registered_redirect_uri(
    provider_and_gateway: tuple[Provider, Client, Any],
) -> None:
    provider, client, _ = provider_and_gateway
    client_id = await registered(client)
    before = len(provider.seen)
    params = {"client_id": client_id, "redirect_uri": CALLBACK, "state": "s1", "resource": "https://x.example/mcp"}
    async with client.get(f"{ISSUER_PATH}/authorize", params=params, allow_redirects=False) as response:
        assert response.status == 302
        location = response.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["error"] == ["invalid_target"]
    assert query["state"] == ["s1"]
    assert query["iss"] == [ISSUER]
    assert len(provider.seen) == before  # nothing reached the provider


async def test_an_unknown_resource_with_an_unverified_redirect_uri_is_never_redirected(
    provider_and_gateway: tuple[Provider, Client, Any],
) -> None:
    _, client, _ = provider_and_gateway
    client_id = await registered(client)
    for redirect_uri in ("https://attacker.example/cb", CALLBACK):
        params = {
            "client_id": client_id if redirect_uri != CALLBACK else "no-such-client",
            "redirect_uri": redirect_uri,
            "resource": "https://x.example/mcp",
        }
        async with client.get(f"{ISSUER_PATH}/authorize", params=params, allow_redirects=False) as response:
            assert response.status == 400
            assert "Location" not in response.headers
            assert (await response.json())["error"] == "invalid_target"


@pytest.mark.parametrize(
    "resource",
    ["https://x.example/mcp", "mcp", "https://127.0.0.1:8000/mcp#f", f"{RESOURCE}x"],
)
async def test_the_token_and_par_endpoints_answer_invalid_target_as_json(
    provider_and_gateway: tuple[Provider, Client, Any], resource: str
) -> None:
    provider, client, _ = provider_and_gateway
    before = len(provider.seen)
    for path in ("/token", "/par"):
        form = {"grant_type": "authorization_code", "client_id": "c", "code": "x", "resource": resource}
        async with client.post(f"{ISSUER_PATH}{path}", data=form) as response:
            assert response.status == 400, path
            body = await response.json()
        assert body["error"] == "invalid_target"
        assert body["error_description"]
    assert len(provider.seen) == before


async def test_repeated_parameters_are_invalid_request(provider_and_gateway: tuple[Provider, Client, Any]) -> None:
    _, client, _ = provider_and_gateway
    async with client.get(f"{ISSUER_PATH}/authorize?client_id=a&client_id=b", allow_redirects=False) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_request"


async def test_document_client_ids_are_translated_where_the_provider_stores_another_id(
    provider_and_gateway: tuple[Provider, Client, MemoryAdapter],
) -> None:
    _, client, adapter = provider_and_gateway
    url = "https://app.example/client.json"
    stored = adapter.stored_client_id("default", url)
    assert stored != url
    for path in ("/token", "/revoke"):
        async with client.post(f"{ISSUER_PATH}{path}", data={"client_id": url, "token": "t"}) as response:
            assert response.status == 200
            form = (await response.json())["form"]
        assert form["client_id"] == [stored], path
    # client credentials (no authorization request came first) ask for the resource's binding at the token
    # endpoint; a refresh keeps what its authorization bound and gets no provider change
    metadata = ClientMetadata(redirect_uris=[CALLBACK], token_endpoint_auth_method="none")
    await adapter.put_document_client("default", NewClient(url, None, 0, 0, metadata))
    for grant, extra in (("client_credentials", {}), ("refresh_token", {"refresh_token": "r"})):
        form = {"grant_type": grant, "client_id": url, "resource": RESOURCE, **extra}
        async with client.post(f"{ISSUER_PATH}/token", data=form) as response:
            seen = (await response.json())["form"]
        assert seen["client_id"] == [stored]
        assert seen.get("audience") == ([RESOURCE] if grant == "client_credentials" else None), grant


async def test_the_stored_id_of_a_document_client_is_refused(
    provider_and_gateway: tuple[Provider, Client, MemoryAdapter],
) -> None:
    """Addressed by its stored id, a document client would skip its document's checks (a removed redirect URI, a
    document gone): refused at every checked endpoint, except the provider's own return after login/consent."""
    provider, client, adapter = provider_and_gateway
    stored = adapter.stored_client_id("default", "https://app.example/client.json")
    before = len(provider.seen)
    async with client.get(
        f"{ISSUER_PATH}/authorize", params={"client_id": stored, "redirect_uri": CALLBACK}, allow_redirects=False
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_client"
    for path in ("/token", "/revoke", "/par"):
        async with client.post(f"{ISSUER_PATH}{path}", data={"client_id": stored, "token": "t"}) as response:
            assert response.status == 400, path
    assert len(provider.seen) == before
    params = {"client_id": stored, "redirect_uri": CALLBACK, "login_verifier": "v"}
    async with client.get(f"{ISSUER_PATH}/authorize", params=params, allow_redirects=False) as response:
        assert response.status == 302  # the provider checks its own verifier


async def test_a_post_the_checks_cannot_read_is_refused_not_forwarded(
    provider_and_gateway: tuple[Provider, Client, Any],
) -> None:
    """Before: a form with a non-ASCII byte, another content type, or the parameters in the query went to the
    provider unchecked (providers read all of them): ``resource=https://evil.example/`` got a token."""
    provider, client, _ = provider_and_gateway
    before = len(provider.seen)
    evil = "https://evil.example/mcp"
    attempts = [
        ({"data": f"grant_type=client_credentials&resource={evil}&x=\xe9".encode("latin-1")}, "UTF-8"),
        ({"data": aiohttp.FormData({"grant_type": "client_credentials", "resource": evil}, quote_fields=True)}, None),
        ({"params": {"resource": evil}, "data": {"grant_type": "client_credentials"}}, "query"),
    ]
    for kwargs, words in attempts:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if isinstance(kwargs["data"], bytes) else None
        async with client.post(f"{ISSUER_PATH}/token", headers=headers, **kwargs) as response:
            assert response.status == 400, kwargs
            body = await response.json()
        assert body["error"] in ("invalid_request", "invalid_target")
        if words:
            assert words in body["error_description"]
    multipart = aiohttp.FormData()
    multipart.add_field("grant_type", "client_credentials")
    multipart.add_field("resource", evil)
    multipart.add_field("file", b"x", filename="x.bin")
    async with client.post(f"{ISSUER_PATH}/token", data=multipart) as response:
        assert response.status == 400
        assert "application/x-www-form-urlencoded" in (await response.json())["error_description"]
    assert len(provider.seen) == before
    # UTF-8 text in a form is fine
    async with client.post(f"{ISSUER_PATH}/token", data={"grant_type": "x", "state": "é"}) as response:
        assert response.status == 200
