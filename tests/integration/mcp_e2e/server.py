"""An MCP server protected by the gateway's issuer: what the SDK clients discover and call.

The ``mcp`` package's own server side (``MCPServer``, streamable HTTP) acting as an OAuth resource server
(``AuthSettings`` with a ``TokenVerifier``):

- ``POST /mcp`` without a valid bearer token answers ``401`` with ``WWW-Authenticate: Bearer
  resource_metadata="http://127.0.0.1:{port}/.well-known/oauth-protected-resource/mcp"`` (RFC 9728 section
  5.1, RFC 6750 section 3);
- that URL serves the protected resource metadata (RFC 9728 section 2) with ``resource`` = the server URL
  and ``authorization_servers`` = [the gateway's issuer];
- one tool, ``whoami``, answers with what the verified token says (subject, client, scopes, audience).

It runs on uvicorn in a thread of the test process (its own event loop), on the session's MCP port (the session
gateways protect ``http://127.0.0.1:{port}/mcp`` as their RFC 8707 resource, see ``mcp_resource`` in
tests/integration/conftest.py) or a free loopback port, and refuses tokens whose audience is not its URL
(``validate_token_resource``, RFC 8707 section 2 / MCP 2025-06-18 "token audience binding").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer

from devstack.process import LOOPBACK, free_port

START_TIMEOUT = 30.0
TOOL_NAME = "whoami"


@dataclass(frozen=True)
class McpServer:
    """A running MCP server, as the tests see it."""

    url: str
    """The MCP endpoint (``http://127.0.0.1:{port}/mcp``): the RFC 9728 ``resource``."""
    resource_metadata_url: str
    """Where its protected resource metadata is served (RFC 9728 section 3.1, path inserted)."""
    issuer: str
    """The authorization server it names: the gateway's issuer."""


def whoami_answer() -> dict[str, Any]:
    """What the ``whoami`` tool returns: the verified token's principal as the resource server sees it."""
    token = get_access_token()
    if token is None:  # RequireAuthMiddleware admits no request without one
        raise RuntimeError("no verified access token in the request context")
    claims = token.claims or {}
    return {
        "subject": token.subject,
        "username": claims.get("preferred_username") or token.subject,
        "client_id": token.client_id,
        "scopes": token.scopes,
        "issuer": claims.get("iss"),
        "audience": claims.get("aud", []),
        "resource": token.resource,
    }


def build_mcp_server(
    *, issuer: str, resource: str, verifier: TokenVerifier, scopes_supported: list[str] | None, binds_resource: bool
) -> MCPServer:
    """``MCPServer`` requiring bearer tokens from ``issuer``.

    ``scopes_supported``: advertised in the protected resource metadata (RFC 9728 section 2) and required of
    every token (403 ``insufficient_scope`` otherwise); ``None`` advertises none, so clients fall back to the
    authorization server's. ``binds_resource``: refuse tokens whose audience is not ``resource`` (RFC 8707).
    """
    server: MCPServer = MCPServer(
        "dcr-gateway-e2e",
        token_verifier=verifier,
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=resource,
            validate_token_resource=binds_resource,
            required_scopes=scopes_supported,
        ),
    )

    @server.tool(name=TOOL_NAME, description="Who the bearer token says is calling")
    def whoami() -> dict[str, Any]:
        return whoami_answer()

    return server


@contextmanager
def running_mcp_server(
    *,
    issuer: str,
    verifier: Callable[[str], TokenVerifier],
    scopes_supported: list[str] | None = None,
    binds_resource: bool = True,
    port: int | None = None,
) -> Iterator[McpServer]:
    """Serve an MCP server protected by ``issuer`` on ``port`` (default: a free one); ``verifier(resource_url)``
    checks tokens; ``binds_resource``: only tokens whose ``aud`` names the server's URL are accepted."""
    port = free_port() if port is None else port
    base = f"http://{LOOPBACK}:{port}"
    handle = McpServer(
        url=f"{base}/mcp",
        resource_metadata_url=f"{base}/.well-known/oauth-protected-resource/mcp",
        issuer=issuer,
    )
    server = build_mcp_server(
        issuer=issuer,
        resource=handle.url,
        verifier=verifier(handle.url),
        scopes_supported=scopes_supported,
        binds_resource=binds_resource,
    )
    app = server.streamable_http_app(host=LOOPBACK)
    uv = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=uv.run, name=f"mcp-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            uv.should_exit = True
            raise RuntimeError(f"the MCP server on {base} did not start within {START_TIMEOUT} s")
        time.sleep(0.05)
    try:
        yield handle
    finally:
        uv.should_exit = True
        thread.join(timeout=15)
