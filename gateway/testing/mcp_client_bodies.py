"""The registration bodies real MCP clients send (/work/shared/reference/mcp-clients.md, "Registration requests
real clients send"), exactly as sent, ports being examples: one table for the RFC 7591 rule tests, the policy tests
and the policy integration tests. The conformance suite's profiles (gateway/conformance/profiles/) carry the same
clients with placeholders and their flows."""

from __future__ import annotations

from typing import Any

MCP_CLIENT_BODIES: dict[str, dict[str, Any]] = {
    # /work/shared/reference/mcp-clients.md, "Registration requests real clients send"
    "python sdk": {
        "client_name": "Example MCP Client",
        "redirect_uris": ["http://localhost:3000/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "user",
    },
    "python sdk, newer (native)": {
        "client_name": "Example MCP Client",
        "redirect_uris": ["http://localhost:3000/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "user",
        "application_type": "native",
    },
    "typescript sdk (application metadata + scope)": {
        "client_name": "My MCP App",
        "redirect_uris": ["http://localhost:8090/oauth/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "mcp",
    },
    "mcp inspector": {
        "redirect_uris": ["http://localhost:6274/oauth/callback", "http://localhost:6274/oauth/callback/debug"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "MCP Inspector",
        "client_uri": "https://github.com/modelcontextprotocol/inspector",
    },
    "mcp-remote": {
        "redirect_uris": ["http://localhost:3334/oauth/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": "MCP CLI Client",
        "client_uri": "https://github.com/modelcontextprotocol/mcp-cli",
        "software_id": "2e6dc280-f3c3-4e01-99a7-8181dbd1d23d",
        "software_version": "0.1.29",
    },
    "claude.ai / claude desktop": {
        "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "mcp",
        "client_name": "Claude",
        "application_type": "web",
    },
    "claude.ai asking for client_secret_post": {
        "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
        "token_endpoint_auth_method": "client_secret_post",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "mcp",
        "client_name": "Claude",
        "application_type": "web",
    },
    "claude code": {
        "client_name": "Claude Code",
        "redirect_uris": ["http://localhost:53124/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    },
    "vs code": {
        "client_name": "Visual Studio Code",
        "client_uri": "https://code.visualstudio.com",
        "grant_types": ["authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"],
        "response_types": ["code"],
        "redirect_uris": [
            "https://insiders.vscode.dev/redirect",
            "https://vscode.dev/redirect",
            "http://127.0.0.1/",
            "http://127.0.0.1:33418/",
        ],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    },
    "cursor (no application_type)": {
        "client_name": "Cursor",
        "redirect_uris": [
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "https://www.cursor.com/agents/mcp/oauth/callback",
            "http://localhost:8787/callback",
        ],
        "token_endpoint_auth_method": "none",
    },
    "confidential connector, one https callback": {
        "client_name": "Connector",
        "redirect_uris": ["https://connector.example.com/oauth/callback"],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "client_uri": "https://connector.example.com",
    },
    "ephemeral 127.0.0.1 port": {
        "redirect_uris": ["http://127.0.0.1:61423/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    },
}
"""Every registration body of the MCP client reference, exactly as sent (ports are examples)."""
