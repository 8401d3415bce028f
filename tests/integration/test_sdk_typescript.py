"""The official MCP TypeScript SDK's OAuth client under Node, end to end, against the gateway on both providers.

``tests/integration/mcp_e2e/ts/client.mjs`` is a small application around ``@modelcontextprotocol/sdk``
(``StreamableHTTPClientTransport`` with an ``OAuthClientProvider``): the SDK meets the MCP server's 401,
discovers the gateway through the protected resource metadata, registers at the gateway, builds the
authorization URL (PKCE S256, RFC 8707 ``resource``), and after the test has played the user (headless
login and consent) redeems the code via ``transport.finishAuth(code)``, reconnects and calls the tool. Then
it drops the access token and calls again, which the SDK answers with a refresh at the gateway's token
endpoint.

Skipped, with the reason, only when Node 20+ or the pinned node_modules (``make node-deps``) are missing.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from devstack.process import LOOPBACK, free_port
from tests.integration.mcp_e2e.deployments import PROVIDERS, Deployment, deployment
from tests.integration.mcp_e2e.node import node_unavailable_reason, run_typescript_client

_UNAVAILABLE = node_unavailable_reason()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")

APPLICATION_SCOPE = {"hydra": "openid offline_access", "keycloak": "openid offline_access"}
"""The scope the application asks for (the SDK's fallback when the resource metadata names none). Hydra issues
refresh tokens only with ``offline_access``; Keycloak issues online refresh tokens without it and offline ones
with it (the development realm grants its user ``offline_access``)."""


@pytest.fixture(scope="module", params=PROVIDERS)
def stack(request: pytest.FixtureRequest) -> Deployment:
    return deployment(request, request.param)


@pytest.mark.parametrize("auth_method", ["none", "client_secret_post", "client_secret_basic"])
async def test_typescript_sdk_discovers_registers_authorizes_refreshes_and_calls_the_tool(
    stack: Deployment, http: aiohttp.ClientSession, auth_method: str
) -> None:
    user = stack.user()
    redirect_uri = f"http://{LOOPBACK}:{free_port()}/callback"
    started = time.monotonic()

    # The resource advertises no scopes, so the SDK uses the application's (SEP-835 order: challenge, resource
    # metadata, client metadata).
    with stack.mcp_server(scopes_supported=None) as mcp:
        run = await run_typescript_client(
            server_url=mcp.url,
            redirect_uri=redirect_uri,
            user=user,
            auth_method=auth_method,
            scope=APPLICATION_SCOPE[stack.provider],
        )
    elapsed = time.monotonic() - started
    result = run.result
    secrets: list[str] = result.pop("secrets")  # only for the log check below, never in an assertion message

    # The SDK registered at the gateway (the client is bound to the gateway's issuer) with the method asked
    # for, and got a secret exactly when that method uses one; the provider holds it, marked as managed.
    client = result["client"]
    assert client["issuer"] == stack.issuer
    assert client["token_endpoint_auth_method"] == auth_method
    assert client["redirect_uris"] == [redirect_uri]
    assert client["has_client_secret"] == (auth_method != "none")
    record = await stack.provider_record(http, client["client_id"])
    assert stack.is_managed(record), record

    # One authorization at the gateway, with PKCE S256 and the MCP server as RFC 8707 resource.
    assert len(user.authorization_urls) == 1 == len(result["authorization_urls"])
    query = parse_qs(urlsplit(user.authorization_urls[0]).query)
    assert user.authorization_urls[0].startswith(stack.gateway.url + "/")
    assert query["client_id"] == [client["client_id"]]
    assert query["code_challenge_method"] == ["S256"]
    assert query["resource"] == [mcp.url]
    assert query["scope"] == [APPLICATION_SCOPE[stack.provider]]

    # Both tool calls ran on verified tokens of the gateway's issuer, for that client and the test user; the
    # second one on a refreshed token (the SDK used the refresh token instead of sending the user again).
    assert result["refreshed"] is True
    tokens = result["tokens"]
    assert len(tokens) == 2
    assert result["access_token_changed"] is True
    assert all(saved["issuer"] == stack.issuer and saved["has_refresh_token"] for saved in tokens)
    for answer in result["tool"]:
        assert answer["issuer"] == stack.issuer
        assert answer["client_id"] == client["client_id"]
        assert answer["username"] == stack.username
        assert "openid" in answer["scopes"]
        # audience-bound to this MCP server (RFC 8707), on the refreshed token too (issue 10; this asserted
        # `resource is None` before, pinning the providers' unbound tokens)
        assert answer["resource"] == mcp.url
        assert mcp.url in answer["audience"]

    # Neither the client's secret nor any token reached the gateway's log; its registration did.
    logged = stack.gateway.log_path.read_text()
    assert client["client_id"] in logged
    leaked = sum(1 for secret in secrets if secret in logged)
    assert len(secrets) == 5 - (auth_method == "none")  # the client secret, two access and two refresh tokens
    assert leaked == 0, f"{leaked} of the client's secrets and tokens are in the gateway log"
    print(
        json.dumps({"provider": stack.provider, "sdk": "typescript", "auth": auth_method, "seconds": round(elapsed, 2)})
    )


async def test_typescript_sdk_identifies_itself_by_its_client_metadata_document(
    stack: Deployment, http: aiohttp.ClientSession
) -> None:
    """SEP-991 / CIMD: with ``clientMetadataUrl`` the SDK uses the URL as its ``client_id`` (no RFC 7591 request)
    once the gateway advertises ``client_id_metadata_document_supported``; the gateway fetches the document from the
    tests' https host and creates the provider client; the flow carries PKCE S256 and the RFC 8707 ``resource``;
    the token and the refreshed token are for the MCP server (``aud``)."""
    user = stack.user()
    redirect_uri = f"http://{LOOPBACK}:{free_port()}/callback"
    name = f"typescript-sdk-{stack.provider}"
    document_url = stack.documents.publish(
        name,
        {
            "client_id": stack.documents.url(name),
            "client_name": "dcr-gateway e2e (TypeScript SDK, CIMD)",
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": APPLICATION_SCOPE[stack.provider],
        },
    )
    registrations = stack.registrations()
    tokens_before = stack.requests(method="POST", path_suffix="/token")
    with stack.mcp_server(scopes_supported=None) as mcp:
        run = await run_typescript_client(
            server_url=mcp.url,
            redirect_uri=redirect_uri,
            user=user,
            auth_method="none",
            scope=APPLICATION_SCOPE[stack.provider],
            client_metadata_url=document_url,
        )
    result = run.result
    secrets: list[str] = result.pop("secrets")

    client = result["client"]
    assert client["client_id"] == document_url
    assert client["has_client_secret"] is False
    assert stack.registrations() == registrations, "the SDK registered instead of using its metadata document"
    # the code and the refresh went to the token endpoint (and the log is read right)
    assert stack.requests(method="POST", path_suffix="/token") >= tokens_before + 2
    record = await stack.provider_record(http, stack.stored_client_id(document_url))
    assert stack.is_managed(record), record

    assert len(user.authorization_urls) == 1 == len(result["authorization_urls"])
    query = parse_qs(urlsplit(user.authorization_urls[0]).query)
    assert user.authorization_urls[0].startswith(stack.gateway.url + "/")
    assert query["client_id"] == [document_url]
    assert query["code_challenge_method"] == ["S256"]
    assert query["resource"] == [mcp.url]

    assert result["refreshed"] is True
    assert result["access_token_changed"] is True
    for answer in result["tool"]:
        assert answer["issuer"] == stack.issuer
        assert answer["client_id"] in (document_url, stack.stored_client_id(document_url))
        assert answer["username"] == stack.username
        assert answer["resource"] == mcp.url  # RFC 8707, on the refreshed token too
        assert mcp.url in answer["audience"]

    logged = stack.gateway.log_path.read_text()
    assert len(secrets) == 4  # two access and two refresh tokens, no client secret
    assert sum(1 for secret in secrets if secret in logged) == 0, "a token is in the gateway log"
