"""The official MCP Python SDK's OAuth client (package ``mcp``), end to end, against the gateway on both providers.

Nothing here speaks OAuth on the client's behalf: ``mcp.client.auth.OAuthClientProvider`` meets the MCP
server's 401, reads its protected resource metadata (RFC 9728), fetches the gateway's authorization server
metadata (RFC 8414 / OpenID discovery), registers dynamically at the gateway (RFC 7591, with the SDK's own
default body), sends the user to the authorization endpoint with PKCE S256 (RFC 7636) and an RFC 8707
``resource``, redeems the code and calls the tool with the token. The test only plays the user (headless
login and consent) and checks what came out: the tool's view of the token, the client the provider holds,
and the gateway's log.

Two applications: ``defaults`` passes only a name and a redirect URI (grant types authorization_code and
refresh_token, so the SDK adds ``offline_access`` to the scope, SEP-2207); ``no-refresh`` registers for
authorization_code only. Expected failures are strict and name their cause (a fix turns them into failures).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from pydantic import AnyUrl

from devstack.process import LOOPBACK, free_port
from tests.integration.mcp_e2e.deployments import PROVIDERS, Deployment, deployment
from tests.integration.mcp_e2e.headless import HeadlessUser, InMemoryTokenStorage, PythonSdkCallbacks
from tests.integration.mcp_e2e.server import TOOL_NAME, McpServer

FLOW_TIMEOUT = 120.0
"""Seconds for one connection (discovery, registration, login, token, tool call): a hang fails, with a trace."""


RESOURCE_SCOPES = ["mcp"]
"""What the MCP server advertises (RFC 9728 ``scopes_supported``) and requires: the realm's ``mcp`` scope on
Keycloak, a scope like any other on Hydra."""


class ScopeNotRegistered(AssertionError):
    """The provider refused the authorization request's scope (``invalid_scope``)."""


class OfflineTokenRefused(AssertionError):
    """The provider refused to issue an offline token at the token endpoint."""


GRANT_TYPES = {
    "defaults": ["authorization_code", "refresh_token"],
    "no-refresh": ["authorization_code"],
}
"""The applications: the SDK's default grant types, and an application that asks for no refresh token."""


def known_failure(error: BaseException) -> BaseException:
    """The failure as one of the known causes above when it is one (the SDK wraps it in exception groups)."""
    text = _messages(error)
    if "invalid_scope" in text:
        return ScopeNotRegistered(text)
    if "Offline tokens not allowed" in text:
        return OfflineTokenRefused(text)
    return error


def _messages(error: BaseException) -> str:
    """Every message in an exception and the groups it is wrapped in."""
    if isinstance(error, BaseExceptionGroup):
        return " | ".join(_messages(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


def expect_failure(request: pytest.FixtureRequest, raises: type[AssertionError], reason: str) -> None:
    request.applymarker(pytest.mark.xfail(raises=raises, strict=True, reason=reason))


@pytest.fixture(scope="module", params=PROVIDERS)
def stack(request: pytest.FixtureRequest) -> Deployment:
    return deployment(request, request.param)


def oauth_provider(
    mcp: McpServer,
    storage: InMemoryTokenStorage,
    user: HeadlessUser,
    redirect_uri: str,
    grant_types: list[str],
    client_metadata_url: str | None = None,
) -> OAuthClientProvider:
    """The SDK's OAuth client as an application configures it: its metadata, storage and browser hooks, and
    optionally the URL of its Client ID Metadata Document (used when the server advertises CIMD support)."""
    callbacks = PythonSdkCallbacks(user)
    return OAuthClientProvider(
        server_url=mcp.url,
        # What a CLI application passes: a name and a loopback callback; the rest are the SDK's defaults
        # (response type code, application_type native, no token_endpoint_auth_method: RFC 7591's
        # client_secret_basic applies), grant types as the application chose.
        client_metadata=OAuthClientMetadata(
            client_name="dcr-gateway e2e (Python SDK)", redirect_uris=[AnyUrl(redirect_uri)], grant_types=grant_types
        ),
        storage=storage,
        redirect_handler=callbacks.redirect_handler,
        callback_handler=callbacks.callback_handler,
        client_metadata_url=client_metadata_url,
    )


async def call_whoami(mcp: McpServer, auth: OAuthClientProvider) -> dict[str, Any]:
    """Connect with the SDK's ``Client`` over streamable HTTP, authenticated by ``auth``; call the tool."""
    async with (
        asyncio.timeout(FLOW_TIMEOUT),
        httpx2.AsyncClient(auth=auth, timeout=httpx2.Timeout(60.0)) as http_client,
        Client(streamable_http_client(mcp.url, http_client=http_client)) as client,
    ):
        result = await client.call_tool(TOOL_NAME, {})
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict), result
    answer: dict[str, Any] = result.structured_content
    return answer


async def test_the_mcp_server_names_the_gateway_as_its_authorization_server(
    stack: Deployment, http: aiohttp.ClientSession
) -> None:
    """RFC 9728 sections 5.1 and 3.2: the 401 points at the metadata, the metadata at the gateway's issuer."""
    with stack.mcp_server(scopes_supported=RESOURCE_SCOPES) as mcp:
        async with http.post(mcp.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}) as response:
            assert response.status == 401
            challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        assert f'resource_metadata="{mcp.resource_metadata_url}"' in challenge
        async with http.get(mcp.resource_metadata_url) as response:
            assert response.status == 200
            metadata = await response.json()
        assert metadata["resource"] == mcp.url
        assert metadata["authorization_servers"] == [stack.issuer]
        assert metadata["scopes_supported"] == RESOURCE_SCOPES
        # and a token the gateway's issuer never issued is refused
        async with http.post(
            mcp.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            headers={"Authorization": "Bearer not-a-token-of-this-issuer"},
        ) as response:
            assert response.status == 401


@pytest.mark.parametrize("application", list(GRANT_TYPES))
async def test_python_sdk_discovers_registers_authorizes_and_calls_the_tool(
    stack: Deployment, http: aiohttp.ClientSession, request: pytest.FixtureRequest, application: str
) -> None:
    offline = "refresh_token" in GRANT_TYPES[application]
    storage = InMemoryTokenStorage()
    user = stack.user()
    redirect_uri = f"http://{LOOPBACK}:{free_port()}/callback"
    with stack.mcp_server(scopes_supported=RESOURCE_SCOPES) as mcp:
        started = time.monotonic()
        try:
            answer = await call_whoami(mcp, oauth_provider(mcp, storage, user, redirect_uri, GRANT_TYPES[application]))
        except BaseException as error:
            raise known_failure(error) from error
        elapsed = time.monotonic() - started
        # A second connection reuses the stored token: no new registration, no new login.
        again = await call_whoami(mcp, oauth_provider(mcp, storage, user, redirect_uri, GRANT_TYPES[application]))

    # The SDK registered at the gateway, and the provider holds that client, marked as the gateway's.
    client = storage.client_info
    assert client is not None
    assert client.issuer == stack.issuer  # SEP-2352: bound to the issuer it registered with
    assert client.client_name == "dcr-gateway e2e (Python SDK)"
    assert [str(uri) for uri in client.redirect_uris or []] == [redirect_uri]
    # the SDK's default body names no auth method: RFC 7591 section 2's default, with a secret to use it
    assert client.token_endpoint_auth_method == "client_secret_basic"
    assert client.client_secret
    record = await stack.provider_record(http, client.client_id)
    assert stack.is_managed(record), record

    # The user was sent to the gateway's authorization endpoint once, with PKCE S256, the RFC 8707 resource
    # and the resource's scopes (plus offline_access, which the SDK adds when it may use refresh tokens).
    assert len(user.authorization_urls) == 1
    authorization_url = user.authorization_urls[0]
    assert authorization_url.startswith(stack.gateway.url + "/")
    query = parse_qs(urlsplit(authorization_url).query)
    assert query["client_id"] == [client.client_id]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [redirect_uri]
    assert query["resource"] == [mcp.url]
    assert query["scope"] == ["mcp offline_access" if offline else "mcp"]

    # The tool saw a verified token: issued by the gateway's issuer to that client for the test user, with
    # the scope the server requires; and the SDK holds a refresh token when it asked for offline_access.
    for seen in (answer, again):
        assert seen["issuer"] == stack.issuer
        assert seen["client_id"] == client.client_id
        assert seen["username"] == stack.username
        assert "mcp" in seen["scopes"]
        # Audience-bound (RFC 8707 section 2): the token names this MCP server, which refuses any other (issue 10;
        # this asserted `resource is None` before, pinning the providers' unbound tokens).
        assert seen["resource"] == mcp.url
        assert mcp.url in seen["audience"]
    assert storage.tokens is not None
    assert bool(storage.tokens.refresh_token) == offline

    # The gateway logged the registration, and neither the client's secret nor its tokens.
    logged = stack.gateway.log_path.read_text()
    assert client.client_id in logged
    secrets = (client.client_secret, storage.tokens.access_token, storage.tokens.refresh_token)
    leaked = sum(1 for secret in secrets if secret and secret in logged)
    assert leaked == 0, f"{leaked} of the client's secrets and tokens are in the gateway log"
    print(json.dumps({"provider": stack.provider, "sdk": "python", "app": application, "seconds": round(elapsed, 2)}))


async def test_python_sdk_with_the_authorization_servers_scopes(stack: Deployment) -> None:
    """A resource that advertises no scopes: the SDK registers and authorizes with the AS's ``scopes_supported``.

    The SDK authorizes with the scope it *asked* for, not the one registered (RFC 7591 section 3.2.1 leaves that
    check to the client), so every advertised scope must be one a registration obtains. Keycloak's own list names
    ``service_account``, which is neither a default nor a default-optional client scope of the realm, so no
    registration gets it: the gateway leaves it out of the ``scopes_supported`` it serves (RFC 8414 section 2),
    and Keycloak grants the whole list. The ``no-refresh`` application keeps the offline-token limit out of the
    picture.
    """
    storage = InMemoryTokenStorage()
    user = stack.user()
    redirect_uri = f"http://{LOOPBACK}:{free_port()}/callback"
    with stack.mcp_server(scopes_supported=None) as mcp:
        try:
            answer = await call_whoami(mcp, oauth_provider(mcp, storage, user, redirect_uri, GRANT_TYPES["no-refresh"]))
        except BaseException as error:
            raise known_failure(error) from error
    assert storage.client_info is not None
    assert answer["client_id"] == storage.client_info.client_id
    assert answer["username"] == stack.username
    requested = parse_qs(urlsplit(user.authorization_urls[0]).query)["scope"][0].split()
    document_scopes = await _scopes_supported(stack)
    assert requested == document_scopes  # the AS's list, as the gateway serves it
    assert "service_account" not in requested  # Keycloak lists it; no registration can get it


async def _scopes_supported(stack: Deployment) -> list[str]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{stack.gateway.url}/.well-known/oauth-authorization-server{stack.issuer[len(stack.gateway.url) :]}"
        ) as response,
    ):
        assert response.status == 200
        scopes: list[str] = (await response.json())["scopes_supported"]
        return scopes


async def test_python_sdk_identifies_itself_by_its_client_metadata_document(
    stack: Deployment, http: aiohttp.ClientSession
) -> None:
    """MCP 2025-11-25+ (SEP-991) / draft-ietf-oauth-client-id-metadata-document: given ``client_metadata_url``, the
    SDK sees ``client_id_metadata_document_supported`` in the gateway's metadata and uses the URL as its
    ``client_id`` (no RFC 7591 request); the gateway fetches the document (served over https by the tests, from a
    development origin with a CA it trusts) and creates the provider client; PKCE S256 and the RFC 8707
    ``resource`` go with the authorization and token requests, and the token's ``aud`` is the MCP server, which
    refuses any other audience."""
    storage = InMemoryTokenStorage()
    user = stack.user()
    redirect_uri = f"http://{LOOPBACK}:{free_port()}/callback"
    grant_types = GRANT_TYPES["defaults"]
    document_url = stack.documents.publish(
        f"python-sdk-{stack.provider}",
        {
            "client_id": stack.documents.url(f"python-sdk-{stack.provider}"),
            "client_name": "dcr-gateway e2e (Python SDK, CIMD)",
            "client_uri": stack.documents.base_url,
            "redirect_uris": [redirect_uri],
            "grant_types": grant_types,
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": "mcp offline_access",
        },
    )
    registrations = stack.registrations()
    tokens_before = stack.requests(method="POST", path_suffix="/token")
    with stack.mcp_server(scopes_supported=RESOURCE_SCOPES) as mcp:
        answer = await call_whoami(
            mcp, oauth_provider(mcp, storage, user, redirect_uri, grant_types, client_metadata_url=document_url)
        )
        again = await call_whoami(
            mcp, oauth_provider(mcp, storage, user, redirect_uri, grant_types, client_metadata_url=document_url)
        )

    # Identified by the document: the URL is the client id, no secret, and nothing reached /register.
    client = storage.client_info
    assert client is not None
    assert client.client_id == document_url
    assert client.client_secret is None
    assert stack.registrations() == registrations, "the SDK registered instead of using its metadata document"
    assert stack.requests(method="POST", path_suffix="/token") > tokens_before  # the log is read right
    # The provider holds the document's client, created by the gateway and marked as its own.
    record = await stack.provider_record(http, stack.stored_client_id(document_url))
    assert stack.is_managed(record), record

    assert len(user.authorization_urls) == 1
    query = parse_qs(urlsplit(user.authorization_urls[0]).query)
    assert user.authorization_urls[0].startswith(stack.gateway.url + "/")
    assert query["client_id"] == [document_url]
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [redirect_uri]
    assert query["resource"] == [mcp.url]

    for seen in (answer, again):
        assert seen["issuer"] == stack.issuer
        assert seen["client_id"] in (document_url, stack.stored_client_id(document_url))
        assert seen["username"] == stack.username
        assert "mcp" in seen["scopes"]
        assert seen["resource"] == mcp.url  # RFC 8707: the token is for this MCP server
        assert mcp.url in seen["audience"]
    assert storage.tokens is not None and storage.tokens.refresh_token

    logged = stack.gateway.log_path.read_text()
    secrets = (storage.tokens.access_token, storage.tokens.refresh_token)
    assert sum(1 for secret in secrets if secret and secret in logged) == 0, "a token is in the gateway log"
