"""End-to-end support for driving the official MCP SDK OAuth clients against the gateway.

- :mod:`.verification`: bearer-token verification as a real MCP server (resource server) would do it:
  RFC 7662 introspection at Hydra's admin API, RFC 9068/7519 JWT validation against Keycloak's JWKS.
- :mod:`.server`: an MCP server (the ``mcp`` package's ``MCPServer``, streamable HTTP on uvicorn) whose
  protected resource metadata (RFC 9728) names the gateway's issuer; one tool, ``whoami``.
- :mod:`.headless`: the user's part of the authorization-code flow, headlessly (the provider's login and
  consent, through :mod:`gateway.conformance.headless`), shaped for each SDK's redirect/callback hooks.
- :mod:`.deployments`: the session's gateway and provider per provider name, MCP servers in front of them (on
  the session's MCP port, the gateway's protected resource), the session's Client ID Metadata Document host, and a
  look at the provider's own record of a client (managed by the gateway or not) and at the gateway's request log.
- :mod:`.node` and ``ts/``: the TypeScript SDK client (``ts/client.mjs``, ``@modelcontextprotocol/sdk`` pinned
  by ``ts/package-lock.json``, installed by ``make node-deps``) run under Node 20+.
"""
