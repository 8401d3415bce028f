"""Redirect URI matching at the authorization endpoint: exact string comparison (RFC 6749 section 3.1.2.3,
OAuth 2.1 section 4.1.1) with only the RFC 8252 section 7.3 loopback port carve-out."""

from __future__ import annotations

import pytest

from gateway.oauth.redirects import is_loopback_redirect, match_redirect_uri

VSCODE = ["http://127.0.0.1:33418/", "https://vscode.dev/redirect"]
CLAUDE_CODE = ["http://localhost/callback", "http://127.0.0.1/callback"]
CLAUDE = ["https://claude.ai/api/mcp/auth_callback"]


@pytest.mark.parametrize(
    ("requested", "registered", "expected"),
    [
        ("https://claude.ai/api/mcp/auth_callback", CLAUDE, CLAUDE[0]),
        ("https://vscode.dev/redirect", VSCODE, VSCODE[1]),
        ("http://127.0.0.1:33418/", VSCODE, VSCODE[0]),
        # any port on the request side (RFC 8252 section 7.3), whether or not the registered one has a port
        ("http://127.0.0.1:50123/", VSCODE, VSCODE[0]),
        ("http://127.0.0.1/", VSCODE, VSCODE[0]),
        ("http://localhost:51888/callback", CLAUDE_CODE, CLAUDE_CODE[0]),
        ("http://localhost/callback", CLAUDE_CODE, CLAUDE_CODE[0]),
        ("http://127.0.0.1:1/callback", CLAUDE_CODE, CLAUDE_CODE[1]),
        ("http://127.0.0.1:65535/callback", CLAUDE_CODE, CLAUDE_CODE[1]),
        ("http://[::1]:8080/cb?x=1", ["http://[::1]/cb?x=1"], "http://[::1]/cb?x=1"),
        ("http://[::1]/cb", ["http://[::1]:9/cb"], "http://[::1]:9/cb"),
        (
            "cursor://anysphere.cursor-mcp/oauth/callback",
            ["cursor://anysphere.cursor-mcp/oauth/callback"],
            "cursor://anysphere.cursor-mcp/oauth/callback",
        ),
    ],
)
def test_matches(requested: str, registered: list[str], expected: str) -> None:
    assert match_redirect_uri(requested, registered) == expected


@pytest.mark.parametrize(
    ("requested", "registered"),
    [
        # exact comparison: nothing normalised
        ("https://claude.ai/api/mcp/auth_callback/", CLAUDE),
        ("https://claude.ai/api/mcp/Auth_callback", CLAUDE),
        ("https://CLAUDE.ai/api/mcp/auth_callback", CLAUDE),
        ("HTTPS://claude.ai/api/mcp/auth_callback", CLAUDE),
        ("https://claude.ai:443/api/mcp/auth_callback", CLAUDE),
        ("https://claude.ai/api/mcp/auth_callback?x=1", CLAUDE),
        ("https://claude.ai/api/mcp/auth_callback#", CLAUDE),
        ("https://claude.ai/api/mcp/%61uth_callback", CLAUDE),
        ("https://claude.ai:8443/api/mcp/auth_callback", CLAUDE),
        # loopback: same host, path and query only
        ("http://127.0.0.1:33418", VSCODE),  # no trailing-slash games
        ("http://127.0.0.1:33418/x", VSCODE),
        ("http://localhost:33418/", VSCODE),  # host differs from the registered 127.0.0.1
        ("http://127.0.0.1:5000/callback", ["http://localhost/callback"]),
        ("http://localhost:5000/Callback", CLAUDE_CODE),
        ("http://localhost:5000/callback?x=1", CLAUDE_CODE),
        ("http://localhost:5000/callback#x", CLAUDE_CODE),
        ("http://LOCALHOST:5000/callback", CLAUDE_CODE),
        ("HTTP://localhost:5000/callback", CLAUDE_CODE),
        ("http://user@localhost:5000/callback", CLAUDE_CODE),
        ("http://localhost:0/callback", CLAUDE_CODE),
        ("http://localhost:65536/callback", CLAUDE_CODE),
        ("http://localhost:+80/callback", CLAUDE_CODE),
        ("http://localhost:/callback", CLAUDE_CODE),
        ("http://localhost:80a/callback", CLAUDE_CODE),
        ("http://127.0.0.2:5000/callback", ["http://127.0.0.2/callback"]),
        ("http://localhost.:5000/callback", CLAUDE_CODE),
        ("http://[::1]:5000/cb", ["http://[0:0::1]/cb"]),
        # https on loopback is not relaxed
        ("https://localhost:5000/callback", ["https://localhost/callback"]),
        ("https://127.0.0.1:5000/callback", ["https://127.0.0.1:4000/callback"]),
        # other hosts never get the port carve-out
        ("http://example.com:5000/callback", ["http://example.com/callback"]),
        ("https://example.com:5000/callback", ["https://example.com/callback"]),
        ("", CLAUDE),
        ("https://claude.ai/api/mcp/auth_callback", []),
    ],
)
def test_does_not_match(requested: str, registered: list[str]) -> None:
    assert match_redirect_uri(requested, registered) is None


def test_exact_match_is_preferred_and_first_registered_wins() -> None:
    registered = ["http://127.0.0.1/cb", "http://127.0.0.1:8000/cb"]
    assert match_redirect_uri("http://127.0.0.1:8000/cb", registered) == "http://127.0.0.1:8000/cb"
    assert match_redirect_uri("http://127.0.0.1:9000/cb", registered) == "http://127.0.0.1/cb"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://127.0.0.1/callback", True),
        ("http://127.0.0.1:33418/", True),
        ("http://[::1]:8080/cb", True),
        ("http://localhost/callback", True),
        ("http://localhost:1234", True),
        ("https://localhost/callback", False),
        ("http://127.0.0.2/callback", False),
        ("http://example.com/callback", False),
        ("http://LOCALHOST/callback", False),
        ("http://user@localhost/callback", False),
        ("http://localhost/callback#x", False),
        ("http://localhost:99999/callback", False),
        ("cursor://callback", False),
        ("", False),
    ],
)
def test_is_loopback_redirect(uri: str, expected: bool) -> None:
    assert is_loopback_redirect(uri) is expected
